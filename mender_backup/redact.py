"""Keep secrets out of everything we print.

Two layers: URLs lose their secrets when rendered (`redact_url`), and every
secret value we learn (URL passwords and secret options, S3 keys) is registered so
that any text we emit is scrubbed of it (`scrub`), whatever path it took to get
there (a driver's own error message included).

What a MongoDB URL can carry: the password of its user info, and the options
tlsCertificateKeyFilePassword, sslPEMKeyPassword (and its older
sslClientCertificateKeyPassword), proxyPassword and authMechanismProperties (e.g.
AWS_SESSION_TOKEN:...). People write passwords unescaped, so the user info is taken
to end at the *last* `@` of the URL (a `@` or `:` in the password stays inside it;
a `@` in an option value makes us mask too much, never too little), and a URL need
not be well-formed (no scheme, a bad port, an unbalanced bracket) to be cleaned.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

_MASK = "***"
_secrets: set[str] = set()

# a URL in running text: scheme:// and what follows up to white space or a quote
_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>[^\s\"'<>`]*)")
SECRET_OPTIONS = ("tlsCertificateKeyFilePassword", "sslPEMKeyPassword", "sslClientCertificateKeyPassword",
                  "proxyPassword", "authMechanismProperties")
# option=value, names matched as the driver does (case-insensitive); a value ends at & or ;
_OPTION = re.compile(r"(?i)(?P<name>\b(?:" + "|".join(SECRET_OPTIONS) + r"))=(?P<value>[^&;\s\"'<>`]*)")
# the parts of authMechanismProperties that are secrets (AWS_SESSION_TOKEN:...)
_SECRET_PROPERTY = re.compile(r"(?i)(TOKEN|SECRET|PASSWORD|KEY)")
# where a driver may cut an unescaped password (a host, a port, a path): its pieces are secrets too
_CUTS = re.compile(r"[@:/?#\[\],;&]")
_MIN_PIECE = 4


def register_secret(value: str | None) -> None:
    """Remember a secret so `scrub` removes it from any output, in the forms it travels
    in: as given, URL-decoded and -encoded, and escaped inside a JSON string."""
    if not value or len(value) < 3:
        return
    forms = {value, unquote(value), unquote_plus(value), quote(value, safe=""), quote_plus(value)}
    for f in list(forms):
        forms.add(json.dumps(f)[1:-1])
        forms.add(repr(f)[1:-1])
    _secrets.update(f for f in forms if len(f) >= 3)


def _userinfo_end(rest: str) -> int:
    """Where the user info of a URL without its scheme ends: its last `@` (-1: none)."""
    return rest.rfind("@")


def _password(rest: str) -> str | None:
    at = _userinfo_end(rest)
    if at < 0 or ":" not in rest[:at]:
        return None
    return rest[:at].split(":", 1)[1]


def register_url_secrets(url: str | None) -> None:
    """Register every secret `url` carries (well-formed or not, with a scheme or without)."""
    url = (url or "").strip()
    if not url:
        return
    rest = url.split("://", 1)[1] if "://" in url else url
    pw = _password(rest)
    if pw:
        register_secret(pw)
        # what a parser that cut the unescaped password may show of it: every run of it
        # from one cut (or its start) to another (or its end), e.g. "pa" of "pa/ss" as a "port"
        cuts = [m.start() for m in _CUTS.finditer(pw)]
        starts, ends = [0] + [c + 1 for c in cuts], cuts + [len(pw)]
        for i in starts:
            for j in ends:
                if j - i >= _MIN_PIECE:
                    register_secret(pw[i:j])
    for m in _OPTION.finditer(url):
        value = m.group("value")
        register_secret(value)
        if m.group("name").lower() == "authmechanismproperties":
            for item in re.split(r"[,]", unquote(value)):
                key, _, v = item.partition(":")
                if v and _SECRET_PROPERTY.search(key):
                    register_secret(v)


def _redact_one(m: re.Match) -> str:
    rest = m.group("rest")
    at = _userinfo_end(rest)
    if at >= 0 and ":" in rest[:at]:
        rest = rest[:at].split(":", 1)[0] + ":" + _MASK + rest[at:]
    return m.group("scheme") + rest


def redact_url(url: str) -> str:
    """mongodb://user:pw@host/db?proxyPassword=x -> mongodb://user:***@host/db?proxyPassword=***
    (also every URL inside a longer text, and one URL without its scheme)."""
    if "://" not in url and not any(c.isspace() for c in url.strip()):
        text = _redact_one(re.match(r"(?P<scheme>)(?P<rest>.*)", url, re.S))   # one URL, its scheme missing
    else:
        text = _URL.sub(_redact_one, url)
    return _OPTION.sub(lambda m: f"{m.group('name')}={_MASK}", text)


def scrub(text: str) -> str:
    text = redact_url(text)
    # longest first, so a secret that contains another is masked whole
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text
