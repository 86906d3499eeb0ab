"""`python -m bench.launch STATS -- CMD...`: run CMD, write its wall time, CPU time and peak
RSS (from wait4) to STATS as JSON, exit with its exit code.

Why a launcher: Linux starts a new process's peak RSS (`ru_maxrss`) at the RSS of the
process it was forked from, so a command forked straight from the bench (which holds the
generated data set, 150+ MiB) would report at least that much. Forked from this small
process instead, the number is the command's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    stats, sep, *cmd = sys.argv[1:]
    assert sep == "--" and cmd, "usage: python -m bench.launch STATS -- CMD..."
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    with open(stats, "w") as f:
        json.dump({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss": ru.ru_maxrss * 1024,
                   "returncode": code}, f)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
