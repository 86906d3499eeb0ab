"""A client that keeps changing data while a backup runs: inserts, updates and deletes
across two databases, each write one oplog entry, in a fixed order, so a test knows the
exact state after any number of writes (`expected`) and can check the invariant of
documents written in pairs (`pairs_consistent`).

Write n (k, j = divmod(n, 6)): j=0/1 inserts pair k into the first/second database,
j=2/3 sets `v` of pair k-1 in each to k+1, j=4/5 deletes pair k-3 in each (before k=3 they
set `w` of pair 0 instead). Every write changes a document (a server logs no entry for an
update that changes nothing). A backup whose collections are read at different moments sees the
databases at different numbers of writes; a consistent one sees both at the same number.
"""

from __future__ import annotations

import threading
import time

from bson import Timestamp

DBS = ("pairs_a", "pairs_b")
COLL = "pairs"


def write(client, n: int) -> None:
    k, j = divmod(n, 6)
    coll = client[DBS[j % 2]][COLL]
    if j < 2:
        coll.insert_one({"_id": k, "v": 0, "pair": k})
    elif j < 4:
        coll.update_one({"_id": max(k - 1, 0)}, {"$set": {"v": k + 1}})
    elif k >= 3:
        coll.delete_one({"_id": k - 3})
    else:
        coll.update_one({"_id": 0}, {"$set": {"w": k}})


def expected(n: int) -> dict[str, dict]:
    """Each database's documents after the first n writes, by _id, in field order."""
    state: dict[str, dict] = {db: {} for db in DBS}
    for i in range(n):
        k, j = divmod(i, 6)
        docs = state[DBS[j % 2]]
        if j < 2:
            docs[k] = {"_id": k, "v": 0, "pair": k}
        elif j < 4:
            docs[max(k - 1, 0)]["v"] = k + 1
        elif k >= 3:
            del docs[k - 3]
        else:
            docs[0]["w"] = k
    return state


def state(client) -> dict[str, dict]:
    return {db: {d["_id"]: d for d in client[db][COLL].find()} for db in DBS}


def pairs_consistent(s: dict[str, dict]) -> bool:
    """Both databases get the same writes, the first one first: at any one moment they
    differ in at most one document. Collections read at different moments differ in many."""
    a, b = s[DBS[0]], s[DBS[1]]
    return sum(a.get(i) != b.get(i) for i in set(a) | set(b)) <= 1


def writes_until(client, end: Timestamp) -> int:
    """How many of the writer's writes the source's oplog has at or before `end`."""
    return client.local["oplog.rs"].count_documents(
        {"ns": {"$in": [f"{db}.{COLL}" for db in DBS]}, "ts": {"$lte": end}})


class Writer:
    """Writes in a thread until stopped; `done` counts the writes made, those of earlier
    writers on the same server included: a second writer goes on where the first stopped
    (starting again at write 0 re-inserted pairs still there: a duplicate key)."""

    def __init__(self, client):
        self.client = client
        self.done = writes_until(client, Timestamp(2**32 - 1, 2**32 - 1))
        self._started = self.done
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                write(self.client, self.done)
                self.done += 1
        except BaseException as exc:    # noqa: BLE001 (reported by stop())
            self.error = exc

    def __enter__(self) -> "Writer":
        self._thread.start()
        while self.done < self._started + 30 and self._thread.is_alive():   # writing before the caller goes on
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.error is None, self.error
