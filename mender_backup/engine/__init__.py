"""What the commands do: backup, restore (restore/), verify, prune, ship (`mender-backup
oplog`: slices of the server's oplog), list, and what they share. The destination has one owner, repository.py (layout, locks, the catalogs of
backups and slices in catalog.py and pitr.py, commits, deletions); retention, artifact
copies, integrity checks, the restore's loading and the oplog replay (replay/) are libraries the
commands use; release/ is what the helm plugin does to a live Mender release. settings.py
holds what the environment configures, read once by the front ends and passed down in the
options. Commands take their options and a Reporter and return a typed result (restore: its
summary document); nothing here prints to stdout or exits."""
