"""Alert delivery against a local SMTP server and a local HTTP receiver started by the test."""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from client_scoring.notifier import AlertDeliveryError, ClientScoringNotifier


class _Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@pytest.fixture
def smtp_server():
    box = _Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield controller.port, box
    controller.stop()


@pytest.fixture
def http_receiver():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], received
    server.shutdown()


def _smtp_uri(port):
    return (f"smtp://127.0.0.1:{port}?from_email=airflow%40example.com&to=oncall%40example.com"
            "&disable_tls=true&disable_ssl=true&timeout=10&retry_limit=1")


def alerts(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT kind, status, repeats, deliveries FROM alerts ORDER BY id")).all()


def test_alert_is_recorded_delivered_by_email_and_webhook_and_repeats_suppressed(
        scoring_env, smtp_server, http_receiver, monkeypatch):
    (smtp_port, box), (http_port, received) = smtp_server, http_receiver
    monkeypatch.setenv("AIRFLOW_CONN_CLIENT_SCORING_SMTP", _smtp_uri(smtp_port))
    monkeypatch.setenv("AIRFLOW_CONN_CLIENT_SCORING_WEBHOOK", f"http://127.0.0.1:{http_port}/http?endpoint=hooks%2Falerts")
    notifier = ClientScoringNotifier(kind="drift", tier="elite", dedup_key="drift:elite:42",
                                     title="Drift: elite v1 live AUC below baseline",
                                     payload={"live_auc": {"purchase": 0.62}, "baseline_auc": {"purchase": 0.73}})
    notifier.notify({})
    assert len(box.messages) == 1 and box.messages[0][0] == ["oncall@example.com"]
    assert "Drift: elite v1" in box.messages[0][1]
    assert len(received) == 1 and received[0]["text"].endswith("Drift: elite v1 live AUC below baseline")
    assert received[0]["alert"]["live_auc"] == {"purchase": 0.62}
    notifier.notify({})                                   # same episode: suppressed
    assert len(box.messages) == 1 and len(received) == 1
    [(kind, status, repeats, deliveries)] = alerts(scoring_env)
    assert (kind, status, repeats) == ("drift", "delivered", 1)
    assert deliveries["email"]["ok"] and deliveries["webhook"]["ok"]


def test_failed_delivery_is_recorded_raised_and_retried_only_where_it_failed(
        scoring_env, smtp_server, http_receiver, monkeypatch):
    (smtp_port, box), (http_port, received) = smtp_server, http_receiver
    monkeypatch.setenv("AIRFLOW_CONN_CLIENT_SCORING_SMTP", _smtp_uri(smtp_port))
    monkeypatch.setenv("AIRFLOW_CONN_CLIENT_SCORING_WEBHOOK", "http://127.0.0.1:9/http")
    notifier = ClientScoringNotifier(kind="task_failure", dedup_key="task_failure:x:y:z", title="Task failed",
                                     payload={"dag_id": "x"})
    with pytest.raises(AlertDeliveryError, match="webhook"):
        notifier.notify({})
    [(_, status, _, deliveries)] = alerts(scoring_env)
    assert status == "failed" and deliveries["email"]["ok"] and not deliveries["webhook"]["ok"]
    monkeypatch.setenv("AIRFLOW_CONN_CLIENT_SCORING_WEBHOOK", f"http://127.0.0.1:{http_port}/http")
    notifier.notify({})
    [(_, status, _, deliveries)] = alerts(scoring_env)
    assert status == "delivered" and len(box.messages) == 1 and len(received) == 1


def test_alert_without_channels_is_recorded(scoring_env):
    ClientScoringNotifier(kind="test", dedup_key="test:1", title="t", payload={}).notify({})
    assert [r[1] for r in alerts(scoring_env)] == ["recorded"]


@pytest.mark.parametrize("map_index, key, title", [
    (-1, "task_failure:d:t:r1", "Task failed: d.t (r1)"),              # unmapped: the key it always had
    (None, "task_failure:d:t:r1", "Task failed: d.t (r1)"),
    (0, "task_failure:d:t:r1:0", "Task failed: d.t[0] (r1)"),          # each mapped instance is its own alert
    (2, "task_failure:d:t:r1:2", "Task failed: d.t[2] (r1)"),
])
def test_task_failure_alert_is_one_per_map_index(map_index, key, title):
    from client_scoring.notifier import task_failure_alert

    t, payload, k = task_failure_alert("d", "t", "r1", map_index, try_number=1, error="ValueError('x')")
    assert (t, k) == (title, key)
    assert payload == {"dag_id": "d", "task_id": "t", "run_id": "r1", "map_index": -1 if map_index is None
                       else map_index, "try_number": 1, "error": "ValueError('x')"}


def test_two_failed_mapped_instances_of_one_task_are_two_alerts(scoring_env):
    from types import SimpleNamespace

    notifier = ClientScoringNotifier(kind="task_failure")
    for index in (0, 1, 1):                              # the second failure of instance 1 is a repeat
        ti = SimpleNamespace(dag_id="nightly_elite_scoring", task_id="score_partition", run_id="r1",
                             map_index=index, try_number=1)
        notifier.notify({"ti": ti, "run_id": "r1", "exception": RuntimeError(f"partition {index}")})
    with scoring_env.connect() as conn:
        rows = conn.execute(sa.text("SELECT dedup_key, repeats, payload ->> 'map_index' FROM alerts ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("task_failure:nightly_elite_scoring:score_partition:r1:0", 0, "0"),
                                        ("task_failure:nightly_elite_scoring:score_partition:r1:1", 1, "1")]
