"""The real servers and data the tests, `make demo` and `make bench` run against:
built by `make test-env` (build.sh), started here (servers.py, kube.py), filled
with Mender-shaped data (mender_data.py). Never shipped: not part of the
mender_backup package or the image."""
