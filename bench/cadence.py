"""Production-cadence replay of the monitoring loop, without Airflow (the same mlcore calls the DAGs make).

Every simulated day, in the order of the DAGs' cron slots: the day's notes, concepts and outcomes are
loaded; Fast scores the clients with a note that day (``fast_scoring_on_upload``); Elite scores every
client (``nightly_elite_scoring``, 02:00); on Sundays both tiers are retrained through the promotion
gate (``weekly_retrain``, 03:00); both tiers are drift-checked (``drift_check``, 06:00), their
alerts recorded, and a tier due a drift retraining is retrained at once (the drift Asset). Every
setting is the platform's default (``Settings.from_env()``: H = 90 days unless the environment says
otherwise). Three worlds by default: a stable one; one whose concept/outcome relationship changes
on the drift day (40 % of the concepts reverse their effect, and the concept mix shifts); and one
where only what the notes show changes (the extractor finds half as many concepts per note from the
drift day on: a covariate shift the label-free estimate can see before any outcome matures).

Usage:
    python bench/cadence.py                    # 4,000 clients, days 420-694, drift on day 560, three worlds
    python bench/cadence.py --clients 2000 --first-day 400 --last-day 600 --drift-day 520 --worlds drift covariate
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlcore.alerts import mark_recorded_only, raise_alert  # noqa: E402
from mlcore.config import Settings  # noqa: E402
from mlcore.ingest import ingest_file  # noqa: E402
from mlcore.monitoring import alerts_for, check_tier  # noqa: E402
from mlcore.scoring import score  # noqa: E402
from mlcore.synth import WorldSpec, rows_by_day, write_world  # noqa: E402
from mlcore.training import train_tier  # noqa: E402

SUNDAY = 6


@dataclasses.dataclass(frozen=True)
class Timeline:
    """A world and the days to run (0-based from the world's start); training happens on ``first_day``."""

    clients: int = 4_000
    seed: int = 3
    drift_day: int | None = 560
    first_day: int = 420
    last_day: int = 694
    world_days: int = 730
    outcome_gap_days: tuple[int, int] = WorldSpec.outcome_gap_days
    drift_flip_share: float = WorldSpec.drift_flip_share
    drift_concepts_per_note: float | None = None


def _load(engine, frames: dict, lo: int, hi: int) -> list[str]:
    """Load the rows of days lo..hi as files through ``ingest_file``; returns the clients with new notes."""
    clients = []
    for kind in ("notes", "concepts", "outcomes"):
        f = frames[kind]
        part = f[(f["_day"] >= lo) & (f["_day"] <= hi)].drop(columns="_day")
        if len(part):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{kind}_days_{lo}_{hi}.csv"
                part.to_csv(path, index=False)
                ingest_file(engine, kind, path)
            if kind == "notes":
                clients = sorted(part["client_id"].unique())
    return clients


def run(engine: sa.Engine, settings: Settings, timeline: Timeline, workdir: Path, echo=print) -> dict:
    """Run ``timeline`` day by day; returns the counts and the checks of both tiers."""
    spec = WorldSpec(n_clients=timeline.clients, days=timeline.world_days, seed=timeline.seed,
                     drift_day=timeline.drift_day, horizon_days=settings.horizon_days,
                     outcome_gap_days=timeline.outcome_gap_days, drift_flip_share=timeline.drift_flip_share,
                     drift_concepts_per_note=timeline.drift_concepts_per_note)
    world = workdir / (f"world-{timeline.clients}-{timeline.seed}-{timeline.drift_day}-{settings.horizon_days}-"
                       f"{timeline.outcome_gap_days[0]}-{timeline.outcome_gap_days[1]}-{timeline.drift_flip_share}-"
                       f"{timeline.drift_concepts_per_note}")
    if not (world / "truth.csv").exists():
        write_world(spec, world)
    frames = rows_by_day(world, spec.start)
    day = lambda i: spec.start + dt.timedelta(days=i)  # noqa: E731
    t0 = time.perf_counter()
    _load(engine, frames, -10**6, timeline.first_day)
    for tier in ("fast", "elite"):
        train_tier(engine, settings, tier, day(timeline.first_day), "manual")
    echo(f"history to day {timeline.first_day} ({day(timeline.first_day)}) loaded, both tiers trained "
         f"({time.perf_counter() - t0:.0f}s); H = {settings.horizon_days}, window {settings.drift_window_days} days, "
         f"drift day {timeline.drift_day}")
    echo(f"{'day':>4s} {'date':10s} {'served':>12s} {'n':>5s} {'AUC p/c':>11s} {'base p/c':>11s} "
         f"{'decision':17s} {'action':12s} {'est. AUC p/c':>12s} {'est. ref':>11s} estimate")
    rows, events = [], []
    for i in range(timeline.first_day, timeline.last_day + 1):
        today = day(i)
        uploaded = _load(engine, frames, i, i) if i > timeline.first_day else []
        if uploaded:
            score(engine, settings, "fast", today, run_id=f"fast__{today}", clients=uploaded)
        score(engine, settings, "elite", today, run_id=f"elite__{today}")
        if today.weekday() == SUNDAY:
            for tier in ("fast", "elite"):
                res = train_tier(engine, settings, tier, today, "schedule")
                events.append({"day": i, "event": "schedule", "tier": tier, "version": res.model.version,
                               "promoted": res.promoted})
        for tier in ("elite", "fast"):
            r = check_tier(engine, settings, tier, today, run_id=f"cadence__{today}")
            if r is None:
                continue
            for a in alerts_for(r):
                alert = raise_alert(engine, a.kind, a.dedup_key, a.title, a.payload, a.tier)
                mark_recorded_only(engine, alert.id)
            if r.wants_retrain:
                res = train_tier(engine, settings, tier, today, "drift", since=r.since)
                events.append({"day": i, "event": "drift", "tier": tier, "version": res.model.version,
                               "promoted": res.promoted})
            rows.append(_row(i, r))
            if tier == "elite" and (i % 7 == 0 or r.action != "none" or r.estimate_action != "none"
                                    or i == timeline.last_day):
                echo(_line(rows[-1]))
        for e in (e for e in events if e["day"] == i and e["event"] == "drift"):
            echo(f"{'':4s} {'':10s} drift retraining of {e['tier']} -> v{e['version']} "
                 f"({'promoted' if e['promoted'] else 'kept as candidate'})")
    checks = pd.DataFrame(rows)
    summary = _summary(engine, checks, events, timeline)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return {"summary": summary, "checks": checks}


def _row(i: int, r) -> dict:
    est = r.estimate or {}
    return {"day": i, "date": r.check_date, "tier": r.tier, "n": r.n, "versions": r.versions,
            "purchase_auc": (r.live.get("purchase") or {}).get("auc", {}).get("value"),
            "churn_auc": (r.live.get("churn") or {}).get("auc", {}).get("value"),
            "purchase_base": r.baseline["purchase"]["auc"]["value"], "churn_base": r.baseline["churn"]["auc"]["value"],
            "detectable_drop": max([(r.live.get(t) or {}).get("auc", {}).get("detectable_drop") or 0.0
                                    for t in ("purchase", "churn")]) or None,
            "breach": r.breach, "decision": r.decision, "action": r.action,
            "est_purchase": (est.get("purchase") or {}).get("value"), "est_churn": (est.get("churn") or {}).get("value"),
            "est_purchase_ref": (est.get("purchase") or {}).get("reference"),
            "est_churn_ref": (est.get("churn") or {}).get("reference"),
            "estimate_drop": r.estimate_drop, "estimate_decision": r.estimate_decision,
            "estimate_action": r.estimate_action}


def _pair(a, b, width=11):
    return f"{a:.3f}/{b:.3f}".rjust(width) if a is not None and b is not None else "—".rjust(width)


def _line(r: dict) -> str:
    served = ",".join(f"v{v}" for v in sorted(r["versions"], key=int)) or "—"
    return (f"{r['day']:4d} {r['date']} {served[-12:]:>12s} {r['n']:5d} {_pair(r['purchase_auc'], r['churn_auc'])} "
            f"{_pair(r['purchase_base'], r['churn_base'])} {r['decision']:17s} {r['action']:12s} "
            f"{_pair(r['est_purchase'], r['est_churn'], 12)} {_pair(r['est_purchase_ref'], r['est_churn_ref'])} "
            f"{r['estimate_decision']}{' (warn)' if r['estimate_action'] == 'warn' else ''}")


def _first(frame: pd.DataFrame, mask) -> int | None:
    hit = frame[mask]
    return int(hit["day"].iloc[0]) if len(hit) else None


def _summary(engine, checks: pd.DataFrame, events: list[dict], timeline: Timeline) -> dict:
    with engine.connect() as conn:
        alerts = dict(conn.execute(sa.text("SELECT kind, count(*) FROM alerts GROUP BY 1")).all())
    out = {"days": timeline.last_day - timeline.first_day + 1, "drift_day": timeline.drift_day,
           "alerts": alerts.get("drift", 0), "warnings": alerts.get("drift_estimate", 0),
           "drift_retrainings": sum(e["event"] == "drift" for e in events),
           "scheduled_retrainings": sum(e["event"] == "schedule" for e in events),
           "scheduled_promoted": sum(e["event"] == "schedule" and e["promoted"] for e in events)}
    for tier in ("elite", "fast"):
        c = checks[checks["tier"] == tier] if len(checks) else checks
        if c.empty:
            continue
        after = c if timeline.drift_day is None else c[c["day"] >= timeline.drift_day]
        before = c if timeline.drift_day is None else c[c["day"] < timeline.drift_day]
        t = {"checks": len(c), "evaluable": int(c["breach"].notna().sum()),
             "insufficient_data": int((c["decision"] == "insufficient_data").sum()),
             "estimable": int(c["estimate_drop"].notna().sum()),
             "alarms": int(c["action"].isin(["alert", "alert_and_retrain", "alert_only_cooldown"]).sum()),
             "warnings": int((c["estimate_action"] == "warn").sum()),
             "false_alarms_before_drift": int(before["decision"].isin(["drift"]).sum()),
             "first_evaluable_day": _first(c, c["breach"].notna()),
             "median_n": float(c.loc[c["breach"].notna(), "n"].median()) if c["breach"].notna().any() else None,
             "median_detectable_drop": (round(float(c["detectable_drop"].dropna().median()), 4)
                                        if c["detectable_drop"].notna().any() else None)}
        if timeline.drift_day is not None:
            first_alarm = _first(after, after["action"].str.startswith("alert"))
            first_breach = _first(after, after["breach"] == True)  # noqa: E712
            first_est = _first(after, after["estimate_drop"] == True)  # noqa: E712
            t.update(first_breach_day=first_breach, first_alarm_day=first_alarm,
                     detection_lag_days=None if first_alarm is None else first_alarm - timeline.drift_day,
                     first_estimated_drop_day=first_est,
                     estimate_lead_days=None if first_est is None or first_breach is None else first_breach - first_est)
            pre = before.tail(14)
            post = after.head(60)
            for k in ("est_purchase", "est_churn"):
                if pre[k].notna().any() and post[k].notna().any():
                    t[f"{k}_move"] = round(float(post[k].min() - pre[k].mean()), 4)
        out[tier] = t
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=Timeline.clients)
    p.add_argument("--seed", type=int, default=Timeline.seed)
    p.add_argument("--first-day", type=int, default=Timeline.first_day)
    p.add_argument("--last-day", type=int, default=Timeline.last_day)
    p.add_argument("--drift-day", type=int, default=Timeline.drift_day)
    p.add_argument("--outcome-gap", type=int, nargs=2, default=Timeline.outcome_gap_days, metavar=("LO", "HI"),
                   help="days between two logged outcomes of a client (synth default 60 240)")
    p.add_argument("--worlds", nargs="+", choices=["stable", "drift", "covariate"],
                   default=["stable", "drift", "covariate"])
    p.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench-cadence")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cadence.json")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from pg import fresh_database, test_server_url

    settings = Settings.from_env()
    results = {}
    worlds = {"stable": {"drift_day": None}, "drift": {"drift_day": args.drift_day},
              "covariate": {"drift_day": args.drift_day, "drift_flip_share": 0.0, "drift_concepts_per_note": 1.5}}
    for name in args.worlds:
        timeline = Timeline(args.clients, args.seed, first_day=args.first_day, last_day=args.last_day,
                            outcome_gap_days=tuple(args.outcome_gap), **worlds[name])
        print(f"\n=== {name} world: {timeline}")
        with fresh_database(test_server_url()) as engine, tempfile.TemporaryDirectory() as home:
            s = dataclasses.replace(settings, database_url=engine.url.render_as_string(hide_password=False),
                                    home=Path(home))
            args.workdir.mkdir(parents=True, exist_ok=True)
            res = run(engine, s, timeline, args.workdir)
        results[name] = res["summary"]
        print(json.dumps(res["summary"], indent=2, default=str))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": {"horizon_days": settings.horizon_days,
                                                 "drift_window_days": settings.drift_window_days,
                                                 "drift_min_n": settings.drift_min_n,
                                                 "drift_tolerance": settings.drift_tolerance},
                                    "results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
