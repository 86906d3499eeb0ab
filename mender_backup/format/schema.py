"""The JSON Schemas of the format's documents (schemas/*.schema.json, their one home;
docs/FORMAT.md explains them): a reader validates a document against its schema before
it trusts a field of it, and refuses it in one line naming the field that is wrong."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from ..errors import InvalidManifestError

MANIFEST = "manifest"
SLICE = "slice"

_formats = jsonschema.FormatChecker(formats=())


@_formats.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """ISO 8601 with a time zone (a naive time would be read as local time somewhere)."""
    if not isinstance(value, str):
        return True          # "type" says what is wrong with a non-string
    return datetime.fromisoformat(value).tzinfo is not None


@cache
def load(name: str) -> dict:
    """The schema `name` ("manifest" or "slice"), as shipped in the package."""
    text = resources.files(__package__).joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load(name), format_checker=_formats)


def _describe(e: ValidationError) -> str:
    where = "/".join(map(str, e.absolute_path)) or "(top)"
    title = e.schema.get("title") if isinstance(e.schema, dict) else None
    if e.validator in ("pattern", "not", "minLength", "maxLength") and title:
        message = f"{_short(e.instance)} is not {title}"
    elif e.validator == "format" and e.validator_value == "date-time":
        message = f"{_short(e.instance)} is not an ISO 8601 time with a time zone"
    else:
        message = e.message
    return f"{where}: {' '.join(message.split())}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def problems(doc: Any, name: str) -> list[str]:
    """Every way `doc` breaks the schema, one line each (empty: it follows it)."""
    return [_describe(e) for e in _validator(name).iter_errors(doc)]


def validate(doc: Any, name: str, where: str, what: str) -> None:
    """Raise InvalidManifestError (exit 5) naming the field that is most clearly wrong."""
    error = best_match(_validator(name).iter_errors(doc))
    if error is not None:
        line = _describe(error)
        if len(line) > 300:
            line = line[:300] + "…"
        raise InvalidManifestError(f"{where}: invalid {what}: {line}")
