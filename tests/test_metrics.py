"""Metrics and failure notifications of real runs: a real Prometheus Pushgateway (built by
`make test-env`) receives them and they are read back over its HTTP API; a failed run
posts a Slack-compatible body to a local webhook receiver; neither a Pushgateway nor a
webhook that is down turns a successful backup into a failed one, and both show."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from tests.cli import assert_one_line_error, result_of, run

WEBHOOK_TOKEN = "T0000/B0000/XXXXsecretXXXXpath"


class _Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append({"path": self.path, "type": self.headers.get("Content-Type"),
                                     "body": json.loads(body)})
        self.send_response(self.server.status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    """A local HTTP receiver standing in for Slack's incoming webhooks."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received, server.status = [], 200
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/services/{WEBHOOK_TOKEN}"
    yield server
    server.shutdown()
    server.server_close()


def group(pg, operation: str, destination: str) -> dict[str, float]:
    """metric name -> value of one pushed group, as the Pushgateway serves it."""
    for g in pg.groups():
        labels = g["labels"]
        if labels.get("job") == "mender-backup" and labels.get("operation") == operation \
                and labels.get("destination") == destination:
            return {name: float(m["metrics"][0]["value"]) for name, m in g.items()
                    if name.startswith("mender_backup_")}
    return {}


@pytest.fixture
def source(new_mongodb, minio, bucket, tmp_path):
    from testenv import mender_data
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.1)
    mender_data.seed_bucket(minio.client(), bucket, count=4)
    dest = f"file://{tmp_path}/dest"
    return dest, {**minio.env(), "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": dest,
                  "MENDER_BACKUP_ARTIFACTS_BUCKET": bucket}


def test_a_run_pushes_its_metrics_to_a_real_pushgateway(pushgateway, source):
    dest, env = source
    e = {**env, "MENDER_BACKUP_PUSHGATEWAY_URL": pushgateway.url}
    t0 = time.time()
    out = result_of(run("backup", "--json", env=e))
    assert out["metrics_pushed"] is True
    m = group(pushgateway, "backup", dest)
    assert m["mender_backup_last_run_success"] == 1 and m["mender_backup_last_run_exit_code"] == 0
    assert t0 <= m["mender_backup_last_success_timestamp_seconds"] <= time.time()
    assert m["mender_backup_last_success_documents"] == out["documents"] > 0
    assert m["mender_backup_last_success_archive_bytes"] == out["archive_size"]
    assert m["mender_backup_last_success_artifacts"] == 4
    assert m["mender_backup_last_success_artifacts_copied"] == 4
    assert m["mender_backup_last_success_artifact_bytes_copied"] > 0
    assert m["mender_backup_last_run_duration_seconds"] > 0
    # a repeat copies no artifact: the metric says so
    run("backup", env=e)
    assert group(pushgateway, "backup", dest)["mender_backup_last_success_artifacts_copied"] == 0

    # a failed run: outcome 0 and its exit code; the last success time is kept
    last_success = group(pushgateway, "backup", dest)["mender_backup_last_success_timestamp_seconds"]
    r = run("backup", env={**e, "MONGODB_URL": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"}, check=False)
    assert_one_line_error(r, 6, "cannot connect to MongoDB")
    m = group(pushgateway, "backup", dest)
    assert m["mender_backup_last_run_success"] == 0 and m["mender_backup_last_run_exit_code"] == 6
    assert m["mender_backup_last_success_timestamp_seconds"] == last_success


def test_a_failed_run_posts_to_the_webhook(source, webhook):
    dest, env = source
    e = {**env, "MENDER_BACKUP_WEBHOOK_URL": webhook.url}
    run("backup", env=e)
    assert webhook.received == []                                # success: no noise
    r = run("backup", env={**e, "MENDER_BACKUP_DESTINATION": "s3://no-such-bucket-x/p"}, check=False)
    assert_one_line_error(r, 3, "does not exist")
    assert len(webhook.received) == 1
    post = webhook.received[0]
    assert post["type"] == "application/json" and set(post["body"]) == {"text"}
    text = post["body"]["text"]
    assert "mender-backup backup FAILED" in text and "exit 3" in text and "does not exist" in text
    assert WEBHOOK_TOKEN not in r.stdout + r.stderr


def test_a_down_pushgateway_or_webhook_never_fails_a_backup_but_shows(source, webhook):
    from testenv.servers import free_port
    dest, env = source
    down = f"http://127.0.0.1:{free_port()}"
    r = run("backup", "--json", env={**env, "MENDER_BACKUP_PUSHGATEWAY_URL": down})
    assert r.returncode == 0 and result_of(r)["metrics_pushed"] is False
    warnings = [json.loads(ln) for ln in r.stdout.splitlines() if '"warning"' in ln]
    assert any("metrics not pushed" in w["msg"] and "cannot connect" in w["msg"] for w in warnings), r.stdout

    webhook.status = 500           # the receiver answers, but refuses
    r = run("backup", env={**env, "MENDER_BACKUP_WEBHOOK_URL": webhook.url,
                           "MONGODB_URL": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"}, check=False)
    err = assert_one_line_error(r, 6)                 # the run's own failure stays the error
    assert "warning: failure notification not sent (webhook): HTTP 500" in r.stderr
    assert WEBHOOK_TOKEN not in r.stderr and webhook.url not in r.stderr and WEBHOOK_TOKEN not in err
