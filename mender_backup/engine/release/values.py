"""Mender release values: read with ruamel.yaml, a few keys rewritten in place
(every other byte kept), the diff an operator approves, and the 0600 file helm
reads them from."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ...errors import MenderBackupError, UsageError


@contextlib.contextmanager
def private_file(text: str, prefix: str = "mender-values-") -> Iterator[Path]:
    """A 0600 temp file (values may hold credentials), removed whatever happens."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".yaml")
    path = Path(name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 16
    return y


def load_values(text: str) -> CommentedMap:
    try:
        data = _yaml().load(text) if text.strip() else None
    except Exception as exc:  # ruamel raises many types; all mean "not YAML"
        raise UsageError(f"values are not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise UsageError("values are not a YAML mapping")
    return data


def get_path(data: Mapping, path: Sequence[str]):
    node = data
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def rewrite_values(text: str, changes: Mapping[tuple[str, ...], str | bool]) -> str:
    """Set scalar keys (e.g. global.mongodb.URL) in a values document, changing
    nothing else: every other byte (comments, order, quoting, anchors, blank
    lines, indentation) stays as it was.

    ruamel.yaml's round-trip parser finds each key and its position; the edit
    is then made on those lines of the original text only. A full ruamel dump
    would re-indent sequences and reflow some scalars, which is noise in the diff
    an operator must approve at 3 a.m.
    """
    for path, value in changes.items():
        text = _set_one(text, path, value)
    # the result must say what we meant, or we do not hand it to helm
    data = load_values(text)
    for path, value in changes.items():
        if get_path(data, path) != value:
            raise MenderBackupError(f"values rewrite failed for {'.'.join(path)}")
    return text


def _set_one(text: str, path: Sequence[str], value: str | bool) -> str:
    data = load_values(text)
    lines = text.splitlines(keepends=True)
    node: CommentedMap = data
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        # a key that only arrives through a merge (`<<: *defaults`) is not written
        # here: an own key overrides the merged one, as YAML intends
        if key not in node or key not in getattr(node, "_ok", node):
            return _insert(text, lines, node, depth, path[depth:], value)
        child = node[key]
        if last:
            if get_path(data, path) == value:
                return text
            return _replace_scalar(text, lines, node, key, value)
        if isinstance(child, CommentedMap) and child and not child.fa.flow_style():
            node = child
            continue
        if child is None or (isinstance(child, CommentedMap) and not child):
            # `mongodb:` or `mongodb: {}`: make it a block mapping holding the rest
            return _expand_empty(text, lines, node, key, depth, path[depth + 1:], value)
        raise UsageError(f"cannot set {'.'.join(path)}: {'.'.join(path[:depth + 1])} is not a block mapping")
    return text


def _indent_unit(lines: Sequence[str]) -> int:
    """The file's own indentation step (2 by Mender's and helm's convention)."""
    for ln in lines:
        stripped = ln.lstrip(" ")
        n = len(ln) - len(stripped)
        if n and stripped.strip() and not stripped.startswith(("#", "-")):
            return n
    return 2


def _child_indent(node: CommentedMap, depth: int, lines: Sequence[str]) -> int:
    if node:
        first = next(iter(node))
        return node.lc.key(first)[1]
    return depth * _indent_unit(lines)


def _block(keys: Sequence[str], value: str, indent: int, unit: int) -> str:
    out = []
    for i, key in enumerate(keys):
        pad = " " * (indent + i * unit)
        if i == len(keys) - 1:
            out.append(f"{pad}{key}: {_scalar(value)}\n")
        else:
            out.append(f"{pad}{key}:\n")
    return "".join(out)


def _block_end(lines: Sequence[str], node: CommentedMap, indent: int) -> int:
    """Index of the line after the last line that belongs to mapping `node`
    (whose keys sit at column `indent`); trailing blank lines and comments
    less indented than its keys belong to whatever follows."""
    first_line = node.lc.key(next(iter(node)))[0]
    end = first_line + 1
    i = end
    while i < len(lines):
        s = lines[i]
        body = s.strip()
        lead = len(s) - len(s.lstrip(" "))
        if body and not body.startswith("#") and lead < indent:
            break
        if body and not (body.startswith("#") and lead < indent):
            end = i + 1
        i += 1
    return end


def _insert(text: str, lines: list[str], node: CommentedMap, depth: int,
            keys: Sequence[str], value: str) -> str:
    unit = _indent_unit(lines)
    if not node:  # no keys at all here: only the top level (empty document) gets here
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + _block(keys, value, 0, unit)
    indent = _child_indent(node, depth, lines)
    at = _block_end(lines, node, indent)
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    lines.insert(at, _block(keys, value, indent, unit))
    return "".join(lines)


def _expand_empty(text: str, lines: list[str], parent: CommentedMap, key: str, depth: int,
                  keys: Sequence[str], value: str) -> str:
    line, col = parent.lc.key(key)
    unit = _indent_unit(lines)
    src = lines[line]
    m = re.match(rf"^(\s*{re.escape(key)}\s*:)[ \t]*(\{{\s*\}}|~|null|Null|NULL)?[ \t]*(#.*)?$", src.rstrip("\n"))
    if not m:
        raise UsageError(f"cannot set {key}.{'.'.join(keys)}: unexpected layout on line {line + 1}")
    comment = f" {m.group(3)}" if m.group(3) else ""
    lines[line] = m.group(1) + comment + "\n" + _block(keys, value, col + unit, unit)
    return "".join(lines)


_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_./:@%+=?&-][A-Za-z0-9_./:@%+=?&,~!$*()\[\]-]*$")


def _plain_ok(value: str) -> bool:
    """True when `value` reads back as the same string when written unquoted."""
    if not value or not _PLAIN_SAFE.match(value) or ": " in value or " #" in value:
        return False
    y = YAML(typ="safe")
    try:
        return y.load(f"k: {value}\n") == {"k": value}
    except Exception:
        return False


def _scalar(value: str | bool, style: str = "") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if style == "'" or (not style and not _plain_ok(value) and "\n" not in value and "'" not in value):
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not _plain_ok(value):
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    return value


def _replace_scalar(text: str, lines: list[str], parent: CommentedMap, key: str, value: str) -> str:
    vline, vcol = _value_pos(lines, parent, key)
    src = lines[vline]
    rest = src[vcol:]
    anchor = ""
    m = re.match(r"(&[^\s]+\s+)", rest)
    if m:  # keep the anchor: aliases of it follow the new value, as the author intended
        anchor, rest = m.group(1), rest[m.end():]
    start = vcol + len(anchor)
    if rest.startswith(("|", ">")):
        # e.g. a signing key a restore wrote: helm hands multi-line strings back as `key: |`
        end = block_scalar_end(lines, vline, parent.lc.key(key)[1])
        lines[vline:end] = [src[:start] + _scalar(value) + "\n"]
        return "".join(lines)
    if rest.startswith(('"', "'")):
        q = rest[0]
        end = _closing_quote(rest, q)
        if end < 0:
            raise UsageError(f"cannot set {key}: quoted value spans several lines (line {vline + 1})")
        token, style = rest[: end + 1], q
    else:
        cm = re.search(r"\s+#", rest)
        token = (rest[: cm.start()] if cm else rest).rstrip("\r\n").rstrip()
        style = ""
        # a plain scalar continued on the next line would be cut: refuse rather than corrupt
        nxt = lines[vline + 1] if vline + 1 < len(lines) else ""
        key_col = parent.lc.key(key)[1]
        if nxt.strip() and not nxt.strip().startswith("#") and (len(nxt) - len(nxt.lstrip(" "))) > key_col \
                and not nxt.lstrip().startswith("- "):
            raise UsageError(f"cannot set {key}: its value spans several lines (line {vline + 1})")
    if token.startswith("*"):
        style = ""  # an alias becomes a value of its own here; the anchor stays where it is
    new = _scalar(value, style)
    lines[vline] = src[:start] + new + src[start + len(token):]
    return "".join(lines)


def block_scalar_end(lines: Sequence[str], header: int, key_col: int) -> int:
    """The line after a block scalar's content: its lines are blank or indented past the
    key; blank lines at its end are left where they are (they separate what follows)."""
    end = header + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip(" ")) > key_col):
        end += 1
    while end > header + 1 and not lines[end - 1].strip():
        end -= 1
    return end


def _value_pos(lines: Sequence[str], parent: CommentedMap, key: str) -> tuple[int, int]:
    """Where the value of `key` starts in the text. Read from the key's own line:
    for an alias (`AWS_BUCKET: *bucket`) ruamel reports the anchored node's
    position, which is somewhere else in the file."""
    kline, kcol = parent.lc.key(key)
    m = re.compile(rf"([\"']?){re.escape(key)}\1[ \t]*:[ \t]*").match(lines[kline], kcol)
    if m:
        rest = lines[kline][m.end():].strip()
        if rest and not rest.startswith("#"):
            return kline, m.end()
    return parent.lc.value(key)


def _closing_quote(s: str, q: str) -> int:
    i = 1
    while i < len(s):
        c = s[i]
        if q == '"' and c == "\\":
            i += 2
            continue
        if c == q:
            if q == "'" and i + 1 < len(s) and s[i + 1] == "'":
                i += 2
                continue
            return i
        i += 1
    return -1


def dump_yaml(data) -> str:
    buf = io.StringIO()
    _yaml().dump(data, buf)
    return buf.getvalue()

