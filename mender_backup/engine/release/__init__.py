"""A live Mender release, as the helm plugin moves it: what Mender's charts hold (chart.py),
its values rewritten with ruamel.yaml (values.py), our companion CronJob release (companion.py,
cron.py), the restore's plan, checked before anything changes (plan.py), and its runbook:
quiesce, restore, repoint, upgrade, restart, with the state lines of where it stopped
(runbook.py). operations.py is the one call per plugin command."""
