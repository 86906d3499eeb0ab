"""Kubernetes, as helm sees it: the API through the official client, connecting as helm
connects (connection.py); the few objects we read and change: Mender's Secrets (secrets.py)
and its workloads, scaled, suspended and restarted by a restore (workloads.py); and helm
itself, `$HELM_BIN` with the plugin's global flags (helm.py)."""
