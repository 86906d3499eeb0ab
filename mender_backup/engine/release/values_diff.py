"""The values diff an operator approves before a restore: unified, with every URL
password, registered secret and credential-named key masked, block scalars (a PEM
key) included."""

from __future__ import annotations

import difflib
import hashlib
import re

from ...redact import scrub
from .values import block_scalar_end


# keys whose values are credentials in Mender's values (and most charts'): masked in diffs
_SECRET_KEY = re.compile(r"^(\s*[-\s]*)([\"']?[\w.-]*(?:password|passwd|secret|token|key|auth|credential|"
                         r"connection_string)[\w.-]*[\"']?\s*:\s*)(\S.*)$", re.IGNORECASE)


def _mask(line: str) -> str:
    prefix, body = line[:1], line[1:]
    m = _SECRET_KEY.match(body.rstrip("\n"))
    if prefix in "+- " and m and not m.group(3).startswith(("|", ">", "#")):
        return f"{prefix}{m.group(1)}{m.group(2)}***" + ("\n" if line.endswith("\n") else "")
    return line


def _mask_blocks(text: str) -> list[str]:
    """The lines, each block scalar under a credential-named key (a PEM key, say) as one
    `*** (sha256 …)` line: a diff line by line would otherwise show its content, and the
    digest's prefix still shows whether it changed."""
    lines = text.splitlines(keepends=True)
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        m = _SECRET_KEY.match(line.rstrip("\n"))
        out.append(line)
        if m and m.group(3).startswith(("|", ">")):
            key_col = len(m.group(1))
            end = block_scalar_end(lines, i, key_col)
            if end > i + 1:
                digest = hashlib.sha256("".join(lines[i + 1:end]).encode()).hexdigest()[:12]
                out.append(" " * (key_col + 2) + f"*** (sha256 {digest}…)\n")
            i = end
            continue
        i += 1
    return out


def values_diff(old: str, new: str, name: str = "values.yaml", after: str = "after restore") -> str:
    """Unified diff with every URL password, registered secret and credential-named key masked."""
    diff = difflib.unified_diff(_mask_blocks(old), _mask_blocks(new),
                                fromfile=f"{name} (deployed)", tofile=f"{name} ({after})")
    return "".join(scrub(_mask(line)) for line in diff)
