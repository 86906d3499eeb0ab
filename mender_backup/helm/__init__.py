"""`helm mender-backup`: the helm plugin's commands (plugin.py), a parser over one engine call
each (engine/release/operations.py). What a Mender release is and how a restore moves it live
in engine/release/; running helm is kube/helm.py."""
