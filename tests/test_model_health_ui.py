"""The Model Health view in a real ``make airflow-ui`` (``airflow standalone``), driven by headless Chromium.

The scoring database is the ``populated`` one (both tiers, scores, drift checks, an alert); the
test logs in through Airflow's own login page, opens the view from the navigation, takes a
screenshot and checks the figures on the page against the tables.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from pg import drop_database

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except urllib.error.URLError:      # not listening yet
        return 0, b""


@pytest.fixture(scope="module")
def airflow_ui(populated, server_url, tmp_path_factory):
    """``make airflow-ui`` as the README runs it (plain ``PATH``, nothing activated), on the populated database.

    The populated database stands in for the demo's (``CLIENT_SCORING_DEMO_DATABASE``); its Airflow
    metadata database does not exist yet, as on a fresh clone, and ``make airflow-ui`` creates it.
    """
    engine, _, _ = populated
    home = tmp_path_factory.mktemp("airflow-ui")
    scoring_db = engine.url.database
    port = _free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(home)), "DATABASE_URL": server_url,
           "CLIENT_SCORING_DEMO_DATABASE": scoring_db, "CLIENT_SCORING_HOME": str(home),
           "CLIENT_SCORING_HORIZON_DAYS": "90", "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32)}
    log = (home / "airflow-ui.log").open("w")
    proc = subprocess.Popen(["make", "airflow-ui"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while _get(f"{base}/api/v2/monitor/health")[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("make airflow-ui did not come up:\n" + (home / "airflow-ui.log").read_text()[-4000:])
            time.sleep(2)
        health = json.loads(_get(f"{base}/api/v2/monitor/health")[1])
        # The README's login: the password the simple auth manager wrote into the state folder.
        password = json.loads((home / "airflow" / "passwords.json").read_text())["admin"]
        yield base, password, engine, home, health
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        time.sleep(1)
        drop_database(server_url, f"{scoring_db}_airflow")


def test_make_airflow_ui_from_a_plain_path_brings_up_every_component(airflow_ui):
    *_, health = airflow_ui
    assert health["metadatabase"]["status"] == "healthy"
    deadline = time.monotonic() + 120
    while health["scheduler"]["status"] != "healthy" and time.monotonic() < deadline:
        time.sleep(3)
        health = json.loads(_get(f"{airflow_ui[0]}/api/v2/monitor/health")[1])
    assert health["scheduler"]["status"] == "healthy", health


def _token(base: str, password: str) -> str:
    request = urllib.request.Request(f"{base}/auth/token", method="POST",
                                     data=json.dumps({"username": "admin", "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())["access_token"]


def _facts(engine) -> dict:
    """What the page must show, read from the base tables (not through mlcore.health)."""
    with engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).one()  # noqa: E731
        champion = q("SELECT version, (metrics -> 'purchase' -> 'auc' ->> 'value')::float AS auc "
                     "FROM model_versions WHERE tier = 'elite' AND status = 'champion'")
        latest = q("SELECT (metrics -> 'purchase' -> 'auc' ->> 'value')::float AS auc FROM drift_checks "
                   "WHERE tier = 'elite' AND metrics ? 'purchase' ORDER BY check_date DESC LIMIT 1")
        checks = q("SELECT count(*) AS n FROM drift_checks WHERE tier = 'elite'")
        scores = q("SELECT count(*) AS n FROM predictions WHERE tier = 'elite' "
                   "AND scored_for = (SELECT max(scored_for) FROM predictions WHERE tier = 'elite')")
        alerts = q("SELECT count(*) AS n FROM alerts")
        choices = q("SELECT count(*) AS n, string_agg(CASE WHEN c = s ->> 'chosen' THEN c END, ',') AS chosen FROM "
                    "(SELECT metrics -> t -> 'selection' AS s FROM model_versions, unnest(ARRAY['purchase', 'churn', "
                    "'clv']) t WHERE tier = 'elite' AND status = 'champion') x, jsonb_object_keys(s -> 'candidates') c")
    return {"version": champion.version, "auc": champion.auc, "live_auc": latest.auc, "checks": checks.n,
            "scores": scores.n, "alerts": alerts.n, "choices": choices.n,
            "chosen": sorted((choices.chosen or "").split(",")) if choices.chosen else []}


def test_anonymous_and_forged_requests_are_refused(airflow_ui):
    base, *_ = airflow_ui
    for path in ("/model-health/", "/model-health/api/health"):
        assert _get(base + path)[0] == 401
        assert _get(base + path, token="not-a-jwt")[0] == 403


def test_the_json_api_shows_the_database(airflow_ui):
    base, password, engine, *_ = airflow_ui
    status, body = _get(f"{base}/model-health/api/health", token=_token(base, password))
    assert status == 200
    data, facts = json.loads(body), _facts(engine)
    elite = data["tiers"]["elite"]
    assert elite["champion"]["version"] == facts["version"]
    assert elite["champion"]["metrics"]["purchase"]["auc"]["value"] == pytest.approx(facts["auc"])
    assert len(elite["live"]) == facts["checks"] and elite["scores"]["n"] == facts["scores"]
    assert sum(elite["scores"]["purchase_likelihood"]) == facts["scores"]
    assert len(data["alerts"]) == facts["alerts"]
    shown = [(name, s["chosen"]) for t in ("purchase", "churn", "clv")
             for s in [elite["champion"]["metrics"][t]["selection"]] for name in s.get("candidates", {})]
    assert len(shown) == facts["choices"] and sorted(c for n, c in shown if n == c) == facts["chosen"]


def test_logged_in_user_opens_the_view_from_the_navigation(airflow_ui):
    from playwright.sync_api import sync_playwright

    base, password, engine, home, _ = airflow_ui
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make install` installs Debian's chromium"
    facts = _facts(engine)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(base + "/")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(base + "/", timeout=60_000)
            page.get_by_role("button", name="Browse").click()
            page.get_by_role("menuitem", name="Model Health").click()
            frame = page.frame_locator("iframe")
            frame.locator("body[data-loaded=true]").wait_for(timeout=60_000)
            shot = home / "model-health.png"
            page.screenshot(path=str(shot), full_page=True)
            text = lambda testid: frame.get_by_test_id(testid).inner_text().strip()  # noqa: E731
            assert text("champion-version-elite") == f"v{facts['version']}"
            assert text("champion-purchase-auc-elite") == f"{facts['auc']:.3f}"
            assert text("latest-live-auc-elite") == f"{facts['live_auc']:.3f}"
            assert int(text("checks-count-elite")) == facts["checks"]
            assert int(text("scores-n-elite").replace(",", "")) == facts["scores"]
            assert frame.get_by_test_id("alerts").locator("tr").count() == facts["alerts"] + 1   # + header
            assert frame.get_by_test_id("auc-chart-elite").locator("polyline").count() >= 2
            if facts["choices"]:     # one row per candidate of each target, + header
                assert frame.get_by_test_id("model-choice-elite").locator("tr").count() == facts["choices"] + 1
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
