"""Keep secrets out of everything we print.

Two layers: URLs lose their password when rendered (`redact_url`), and every
secret value we learn (URL passwords, S3 keys) is registered so that any text
we emit is scrubbed of it (`scrub`), whatever path it took to get there.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_MASK = "***"
_secrets: set[str] = set()

# scheme://user:password@host — works for mongodb://, mongodb+srv://, s3://, http(s)://
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@\s]*)@")


def register_secret(value: str | None) -> None:
    """Remember a secret so `scrub` removes it from any output."""
    if value and len(value) >= 3:
        _secrets.add(value)
        decoded = unquote(value)
        if decoded != value:
            _secrets.add(decoded)


def register_url_secrets(url: str | None) -> None:
    for m in _USERINFO.finditer(url or ""):
        register_secret(m.group("pw"))


def redact_url(url: str) -> str:
    """mongodb://user:pw@host/db -> mongodb://user:***@host/db"""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{_MASK}@", url)


def scrub(text: str) -> str:
    text = redact_url(text)
    # longest first, so a secret that contains another is masked whole
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text
