"""`$v: 2` oplog updates: a document diff applied to the document's current bytes.

MongoDB 5.0+ logs an update as `{"$v": 2, "diff": D}`. A document diff D has the
sections `d` (fields to delete: {name: false}), `u` (fields whose value is replaced,
kept in place), `i` (fields appended at the end) and one `s<name>` per field that
holds a diff of its own; an array diff is marked `a: true` and has `l` (the new
length), `u<index>` (new values) and `s<index>` (sub-diffs). The rules below are
the server's (src/mongo/db/update/document_diff_applier.cpp), including those that
make a diff safe to apply again to a later version of the document: a sub-diff that
meets a value of another type, or an index past the end, leaves a null that a later
entry overwrites.

We apply diffs here rather than through the server's `applyOps`, which neither
FerretDB nor DocumentDB has; the result is byte for byte what MongoDB computes,
since untouched fields are copied as raw bytes (rawbson).
"""

from __future__ import annotations

from .rawbson import ARRAY, DOCUMENT, BsonError, Element, build, build_array, elements, null

_DELETE = ("d",)


def is_array_diff(diff: bytes) -> bool:
    first = next(elements(diff), None)
    return first is not None and first.name == "a"


def _doc_mods(diff: bytes) -> tuple[dict[str, tuple], list[Element]]:
    """-> (field -> modification, the fields to append at the end, in order)."""
    mods: dict[str, tuple] = {}
    appended: list[Element] = []

    def put(name: str, mod: tuple) -> None:
        if name in mods:
            raise BsonError(f"duplicate field {name!r} in an oplog diff")
        mods[name] = mod

    for sec in elements(diff):
        if sec.name == "d":
            for e in elements(sec.value):
                put(e.name, _DELETE)
        elif sec.name in ("u", "i"):
            for e in elements(sec.value):
                put(e.name, (sec.name, e))
                appended.append(e)
        elif sec.name.startswith("s") and sec.type == DOCUMENT:
            put(sec.name[1:], ("s", sec.value))
        else:
            raise BsonError(f"unknown section {sec.name!r} in an oplog diff")
    return mods, appended


def apply(pre: bytes, diff: bytes) -> bytes:
    """The document `pre` (raw BSON) after the document diff `diff` (raw BSON)."""
    mods, appended = _doc_mods(diff)
    out: list[Element] = []
    placed: set[str] = set()
    for e in elements(pre):
        mod = mods.get(e.name)
        if mod is None:
            out.append(e)
        elif mod[0] == "u":                     # replaced where it stands
            out.append(mod[1])
            placed.add(e.name)
        elif mod[0] == "s":
            out.append(_sub(e, mod[1]))
        # "d": dropped; "i": dropped here, appended below
    out += [e for e in appended if e.name not in placed]
    return build(out)


def _sub(e: Element, sub: bytes) -> Element:
    if is_array_diff(sub):
        if e.type == ARRAY:
            return Element(e.name, ARRAY, _apply_array(e.value, sub))
    elif e.type == DOCUMENT:
        return Element(e.name, DOCUMENT, apply(e.value, sub))
    # the value changed type since this entry: a later entry sets it, null until then
    return null(e.name)


def _apply_array(pre: bytes, diff: bytes) -> bytes:
    size: int | None = None
    mods: dict[int, tuple] = {}
    for e in elements(diff):
        if e.name == "a":
            continue
        if e.name == "l":
            size = e.as_int()
        elif e.name[:1] in ("u", "s") and e.name[1:].isdigit():
            mods[int(e.name[1:])] = (e.name[0], e)
        else:
            raise BsonError(f"unknown field {e.name!r} in an oplog array diff")
    out: list[Element] = []
    old = list(elements(pre))
    idx = 0
    while idx < len(old) and (size is None or idx < size):
        out.append(_array_value(old[idx], mods.pop(idx, None)))
        idx += 1
    while (size is not None and idx < size) or mods:   # past the old end: pad with nulls
        out.append(_array_value(None, mods.pop(idx, None)))
        idx += 1
    return build_array(out)


def _array_value(old: Element | None, mod: tuple | None) -> Element:
    if mod is None:
        return old if old is not None else null("")
    kind, e = mod
    if kind == "u":
        return e
    if old is None:
        return null("")
    return _sub(old, e.value)
