"""Side-by-side benchmarks for mender-backup (`make bench`, `python -m bench.run [--quick]`).

Everything measured is a separate process, timed from outside the same way
(wall time, CPU time and peak RSS from `os.wait4`), against the real servers of
the test environment (FerretDB, MinIO) started once per run. Nothing here
asserts on timings: the numbers go to a table and to bench/RESULTS.md.
"""
