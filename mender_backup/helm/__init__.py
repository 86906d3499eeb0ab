"""`helm mender-backup`: the helm plugin's commands (plugin.py) and the libraries
they use: running helm (runner.py), Mender values (values.py), our companion
release (companion.py, cron.py), what a Mender release is made of (mender.py), the
restore's plan, checked before anything changes (plan.py), and its runbook: quiesce,
restore, repoint, restart, with the state lines of where it stopped (runbook.py).
The Kubernetes API is mender_backup.kube."""
