"""What the commands do: backup, restore (restore/), verify, prune, ship (`mender-backup
oplog`: slices of the server's oplog), list, and what they share. The destination has one owner, repository.py (layout, locks, the catalogs of
backups and slices in catalog.py and pitr.py, commits, deletions); retention, artifact
copies, integrity checks, the restore's loading and the oplog replay (replay/) are libraries the
commands use. Commands take their options and a Reporter and return a result
document; nothing here prints to stdout or exits."""
