"""The Kubernetes API, through the official client: connecting as helm connects
(connection.py), and the few objects we read and change: Mender's Secrets
(secrets.py) and its workloads, scaled, suspended and restarted by a restore (workloads.py)."""
