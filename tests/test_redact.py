"""Every secret a MongoDB URL can carry vanishes from what we print: redact_url on the URL
itself, scrub on any text it travels into (pymongo's own error messages included), for
well-formed URLs and malformed ones. The end-to-end half runs the real tool."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pymongo import uri_parser

from mender_backup.redact import redact_url, register_url_secrets, scrub
from tests.cli import json_events, run

PW = "Pw-7f3kq9z"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEsessiontoken"

# (url, the secrets in it)
URLS = [
    (f"mongodb://mender:{PW}@db:27017/x?authSource=admin", [PW]),
    (f"mongodb+srv://mender:{PW}@cluster0.example.net/", [PW]),
    ("mongodb://mender:p%40ss%3Aword-99@db/", ["p%40ss%3Aword-99", "p@ss:word-99"]),
    # unescaped @ and : in the password: the tail after the first @ used to leak
    ("mongodb://mender:s3cr@t-t@il:more@db:27017/x", ["s3cr@t-t@il:more", "t-t@il:more", "t-t@il"]),
    ("mongodb://mender:pa:ss:word-44@db/", ["pa:ss:word-44", "word-44"]),
    ("mongodb://mender:pass/word-55@db/x", ["pass/word-55", "word-55"]),
    ("mongodb://mender:pass?word-66@db/x?authSource=admin", ["pass?word-66", "word-66"]),
    # secret options
    (f"mongodb://db/?tls=true&tlsCertificateKeyFile=/k.pem&tlsCertificateKeyFilePassword=kfp-{PW}", [f"kfp-{PW}"]),
    (f"mongodb://db/?ssl=true&sslPEMKeyPassword=pem-{PW}&w=1", [f"pem-{PW}"]),
    (f"mongodb://db/?SSLPEMKEYPASSWORD=PEM-{PW}", [f"PEM-{PW}"]),
    (f"mongodb://AKIAEXAMPLE:awssecret-{PW}@db/?authMechanism=MONGODB-AWS"
     f"&authMechanismProperties=AWS_SESSION_TOKEN:{TOKEN},SERVICE_NAME:x", [f"awssecret-{PW}", TOKEN]),
    (f"mongodb://db/?proxyHost=p&proxyUsername=u&proxyPassword=proxy-{PW}", [f"proxy-{PW}"]),
    (f"mongodb://u:{PW}@db/?replicaSet=rs0;proxyPassword=semi-{PW};w=1", [PW, f"semi-{PW}"]),
    # malformed: no scheme, a bad port, unbalanced brackets and quotes, stray spaces
    (f"mender:{PW}@db:27017/x", [PW]),
    (f"mongodb://mender:{PW}@db:notaport/x", [PW]),
    (f"mongodb://mender:{PW}@[::1/x", [PW]),
    (f"mongodb://mender:{PW}@db:27017/x?tlsCertificateKeyFilePassword=unbal-{PW}&", [PW, f"unbal-{PW}"]),
    (f"mongodb:/mender:{PW}@db/", [PW]),
    (f"'mongodb://mender:{PW}@db/", [PW]),
]


@pytest.mark.parametrize("url,secrets", URLS)
def test_redact_url_removes_every_secret(url, secrets):
    out = redact_url(url)
    for s in secrets:
        if "%" not in s:        # the encoded form's decoded twin is not in the text
            assert s not in out, out
    assert "***" in out


@pytest.mark.parametrize("url,secrets", URLS)
def test_scrub_removes_every_secret_wherever_it_travels(url, secrets):
    register_url_secrets(url)
    texts = [f"error: cannot connect to {url}: boom", json.dumps({"msg": f"url {url}"}), repr(url)]
    try:
        uri_parser.parse_uri(url)
    except Exception as exc:        # pymongo's own words about the URL
        texts.append(f"bad MongoDB URL: {exc}")
    texts += [f"something said {s} here" for s in secrets]
    for text in texts:
        out = scrub(text)
        for s in secrets:
            assert s not in out, (text, out)


def test_well_formed_urls_keep_what_is_not_secret():
    assert redact_url("mongodb://mender:s3cr%40t@db:27017/x?authSource=admin") == \
        "mongodb://mender:***@db:27017/x?authSource=admin"
    assert redact_url("see mongodb://u:p@ss@db/x?tls=true&proxyPassword=z and s3://b/p") == \
        "see mongodb://u:***@db/x?tls=true&proxyPassword=*** and s3://b/p"
    assert redact_url("mongodb://db:27017/x") == "mongodb://db:27017/x"


# ------------------------------------------------------------------ end to end


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.bodies.append(self.rfile.read(n))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def webhook():
    _Recorder.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, _Recorder.bodies
    server.shutdown()
    server.server_close()


E2E_URLS = [
    (f"mongodb://mender:s3cr@t-t@il:{PW}@127.0.0.1:1/?serverSelectionTimeoutMS=300", ["s3cr@t-t@il", PW]),
    (f"mongodb://mender:{PW}@127.0.0.1:1/?serverSelectionTimeoutMS=300&tls=true"
     f"&tlsCertificateKeyFile=/nonexistent.pem&tlsCertificateKeyFilePassword=kfp-{PW}", [PW, f"kfp-{PW}"]),
    (f"mongodb://AKIAEXAMPLE:awssecret-{PW}@127.0.0.1:1/?serverSelectionTimeoutMS=300"
     f"&authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:{TOKEN}", [f"awssecret-{PW}", TOKEN]),
    (f"mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&proxyHost=127.0.0.1&proxyPort=9"
     f"&proxyUsername=u&proxyPassword=proxy-{PW}", [f"proxy-{PW}"]),
    (f"mender:{PW}@127.0.0.1:1/", [PW]),                                       # no scheme
    (f"mongodb://mender:{PW}@127.0.0.1:bad/", [PW]),                           # a bad port
    (f"mongodb://mender:pa/{PW}@127.0.0.1:1/", [PW, f"pa/{PW}"]),              # a / in the password
]


@pytest.mark.parametrize("url,secrets", E2E_URLS)
def test_no_url_secret_reaches_stderr_stdout_or_the_webhook(url, secrets, webhook, tmp_path):
    server, bodies = webhook
    e = {"MONGODB_URL": url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}/dest",
         "MENDER_BACKUP_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/hook"}
    outputs = []
    for args in (["backup"], ["backup", "--json"]):
        r = run(*args, env=e, check=False, timeout=120)
        assert r.returncode in (1, 2, 6), r.stderr
        assert "Traceback" not in r.stderr
        outputs += [r.stdout, r.stderr]
        if "--json" in args:
            json_events(r)          # stdout is JSON lines still
    assert len(bodies) == 2, "the webhook was not called for each failure"
    outputs += [b.decode() for b in bodies]
    for s in secrets:
        for text in outputs:
            assert s not in text, text
