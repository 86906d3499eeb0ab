"""The compatibility rule every document of the format follows (docs/FORMAT.md,
"Compatibility rule"): a reader reads every format_version up to its own and refuses a
newer one in one line; unknown fields are ignored."""

from __future__ import annotations

from dataclasses import fields

from ..errors import IntegrityError


def readable_version(d: dict, newest: int, where: str, what: str) -> int:
    """The document's format_version, once this reader can read it."""
    version = d.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise IntegrityError(f"{where}: corrupt {what} (format_version {version!r})")
    if version > newest:
        raise IntegrityError(f"{where}: written by a newer mender-backup ({what} format {version}; this one "
                             f"reads up to {newest}): upgrade mender-backup")
    return version


def known(cls, d: dict):
    """Fields this version knows; later versions may add more."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})
