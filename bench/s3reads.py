"""`python -m bench.s3reads ARGS...`: `mender-backup ARGS`, counting every S3 object it reads
(requests and bytes, per key), printed to stderr as one JSON line at the end:
{"s3reads": {KEY: {"gets": N, "bytes": B}}}. It proves from the client's side how often a
restore from S3 reads the archive (the target: once)."""

from __future__ import annotations

import json
import sys
import threading

from mender_backup.stores import s3

_reads: dict[str, dict[str, int]] = {}
_lock = threading.Lock()


class _Counted:
    def __init__(self, inner, key: str):
        self._inner, self._key = inner, key

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        with _lock:
            _reads[self._key]["bytes"] += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._inner, name)


def main() -> int:
    real = s3.S3Store.open_read

    def open_read(self, key: str):
        full = self.full_key(key)
        with _lock:
            _reads.setdefault(full, {"gets": 0, "bytes": 0})["gets"] += 1
        return _Counted(real(self, key), full)

    s3.S3Store.open_read = open_read
    from mender_backup import cli
    code = 0
    try:
        sys.argv = ["mender-backup", *sys.argv[1:]]
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        print(json.dumps({"s3reads": _reads}), file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
