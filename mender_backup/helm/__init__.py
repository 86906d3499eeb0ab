"""`helm mender-backup`: the helm plugin's commands (plugin.py) and the libraries
they use: running helm (runner.py), Mender values (values.py), our companion
release (companion.py, cron.py). The Kubernetes API is mender_backup.kube."""
