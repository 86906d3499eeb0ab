"""What the commands do: backup, restore, verify, prune, and what they share
(the lock, the catalog of backups, retention, artifact copies, integrity
checks). Each command module has one entry point, `run`, that takes options and
a Reporter and returns a result document; nothing here prints or exits."""
