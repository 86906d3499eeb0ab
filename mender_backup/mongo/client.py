"""Connecting to MongoDB, and what a server says about itself."""

from __future__ import annotations

import pymongo
from pymongo import errors as perr
from pymongo import uri_parser

from ..errors import UnreachableError, UsageError
from ..redact import redact_url, register_url_secrets

SYSTEM_DATABASES = {"admin", "local", "config"}


def connect(url: str, timeout_ms: int = 10000) -> pymongo.MongoClient:
    """Connect and ping; every failure is one clear line."""
    if not url:
        raise UsageError("no MongoDB URL given (set MONGODB_URL or --mongodb-url)")
    register_url_secrets(url)
    try:
        given = {k.lower() for k in uri_parser.parse_uri(url)["options"]}
    except (perr.InvalidURI, perr.ConfigurationError, ValueError) as exc:
        raise UsageError(f"bad MongoDB URL {redact_url(url)!r}: {exc}") from None
    # our defaults only where the URL sets nothing: keyword arguments would override it
    defaults = {"serverSelectionTimeoutMS": timeout_ms, "connectTimeoutMS": timeout_ms, "appname": "mender-backup"}
    kwargs = {k: v for k, v in defaults.items() if k.lower() not in given}
    try:
        client = pymongo.MongoClient(url, **kwargs)
        client.admin.command("ping")
    except perr.OperationFailure as exc:
        if exc.code == 18 or "auth" in str(exc).lower():
            raise UnreachableError(f"MongoDB at {redact_url(url)}: authentication failed") from None
        raise UnreachableError(f"MongoDB at {redact_url(url)}: {exc.details.get('errmsg', exc)}") from None
    except perr.PyMongoError as exc:
        raise UnreachableError(f"cannot connect to MongoDB at {redact_url(url)}: {type(exc).__name__}") from None
    return client


def server_version(client: pymongo.MongoClient) -> str:
    try:
        return str(client.server_info().get("version", ""))
    except perr.PyMongoError:
        return ""


def list_databases(client: pymongo.MongoClient, only: list[str] | None = None) -> list[str]:
    names = [n for n in client.list_database_names() if n not in SYSTEM_DATABASES]
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise UsageError(f"database(s) not found on the server: {', '.join(missing)}")
        names = [n for n in names if n in only]
    return sorted(names)
