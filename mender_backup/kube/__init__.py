"""The Kubernetes API, through the official client: connecting as helm connects
(connection.py), and the few objects we read and change (objects.py)."""
