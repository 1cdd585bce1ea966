"""Drift checks: live accuracy of each tier's champion on matured outcomes, against its validation baseline.

Each outcome logged on day d in the check window is matched with the latest prediction of the
champion for that client scored for a day on or before d - H (and not older than
``drift_match_days``). Live metrics carry bootstrap intervals; fewer than ``drift_min_n`` matches
is "insufficient_data", never "ok". A target breaches when the upper bound of its live AUC is
below the baseline AUC minus ``drift_tolerance``. The decision is anti-flapping: drift opens an
episode when 2 of the last 3 evaluable checks breach, and the episode closes only after 2
consecutive evaluable checks without a breach. An opened episode raises one alert at once and
triggers one retraining ``drift_retrain_delay_days`` later, when outcomes logged since the drift
began are there to learn from; at most one retraining per ``drift_cooldown_days``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlcore.config import Settings
from mlcore.db import read_frame
from mlcore.evaluation import evaluate
from mlcore.registry import Registry

DECISION_TARGETS = ("purchase", "churn")
BREACHES_TO_OPEN, OUT_OF = 2, 3
RETRAIN_ACTIONS = ("retrain", "alert_and_retrain")
CLEAN_TO_CLOSE = 2
_PSI_SAMPLE = 100_000      # scores per day for the score deciles
_MIX_SAMPLE = 25_000       # recent notes for the concept mix

# Two forms of "each outcome with the latest prediction scored H to H + tol days before it".
# Probe: one index probe per outcome (LIMIT 1 reads one index entry even when every day was
# scored); Postgres never runs a LATERAL subquery with LIMIT in parallel workers, so the outcomes
# are split by a hash of the client into ``parts`` queries run side by side. Best when the
# predictions that could match far outnumber the outcomes (nightly scoring of every client).
_MATCHED = """
SELECT o.purchased, o.churned, o.lifetime_value, p.purchase_likelihood, p.churn_risk, p.predicted_clv
FROM outcomes o
JOIN LATERAL (
    SELECT purchase_likelihood, churn_risk, predicted_clv FROM predictions p
    WHERE p.client_id = o.client_id AND p.tier = %(tier)s AND p.model_version = %(version)s
      AND p.scored_for <= o.date - %(h)s AND p.scored_for >= o.date - %(h)s - %(tol)s
    ORDER BY p.scored_for DESC LIMIT 1) p ON true
WHERE o.date > %(start)s AND o.date <= %(end)s
  AND (%(parts)s = 1 OR abs(hashtext(o.client_id)) %% %(parts)s = %(part)s)
"""
# Join: one set-based pass (parallel hash join), then the latest per outcome. Best when there are
# about as many candidate predictions as outcomes (2x faster than the probes on 1M of each).
_MATCHED_JOIN = """
SELECT DISTINCT ON (o.client_id, o.date)
       o.purchased, o.churned, o.lifetime_value, p.purchase_likelihood, p.churn_risk, p.predicted_clv
FROM outcomes o
JOIN predictions p ON p.client_id = o.client_id
 AND p.scored_for <= o.date - %(h)s AND p.scored_for >= o.date - %(h)s - %(tol)s
WHERE o.date > %(start)s AND o.date <= %(end)s
  AND p.tier = %(tier)s AND p.model_version = %(version)s
  AND p.scored_for > %(start)s - %(h)s - %(tol)s AND p.scored_for <= %(end)s - %(h)s
ORDER BY o.client_id, o.date, p.scored_for DESC
"""
_MATCH_PARTS = 2
_JOIN_WHEN_CANDIDATES_PER_OUTCOME = 3.0


def _estimated_rows(engine, queries: list[str], params: dict) -> list[float]:
    """The planner's row estimate for each of ``queries`` (EXPLAIN only: nothing is read)."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        rows = []
        for sql in queries:
            cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            rows.append(float(cur.fetchone()[0][0]["Plan"]["Plan Rows"]))
        raw.rollback()
    finally:
        raw.close()
    return rows


def matched_outcomes(engine, params: dict) -> pd.DataFrame:
    """Outcomes of the window with their matched prediction, by whichever form suits the data (see above)."""
    candidates, outcomes = _estimated_rows(engine, [
        "SELECT 1 FROM predictions WHERE tier = %(tier)s AND model_version = %(version)s "
        "AND scored_for > %(start)s - %(h)s - %(tol)s AND scored_for <= %(end)s - %(h)s",
        "SELECT 1 FROM outcomes WHERE date > %(start)s AND date <= %(end)s"], params)
    if candidates <= _JOIN_WHEN_CANDIDATES_PER_OUTCOME * max(outcomes, 1.0):
        return read_frame(engine, _MATCHED_JOIN, params)
    with ThreadPoolExecutor(max_workers=_MATCH_PARTS, thread_name_prefix="drift-match") as pool:
        parts = pool.map(lambda k: read_frame(engine, _MATCHED, {**params, "parts": _MATCH_PARTS, "part": k}),
                         range(_MATCH_PARTS))
        return pd.concat(list(parts), ignore_index=True)


@dataclasses.dataclass(frozen=True)
class CheckResult:
    tier: str
    check_date: dt.date
    model_version: int
    n: int
    breach: bool | None
    decision: str
    action: str
    episode_id: int | None
    live: dict
    baseline: dict
    diagnostics: dict
    id: int

    @property
    def wants_retrain(self) -> bool:
        return self.action in RETRAIN_ACTIONS

    @property
    def wants_alert(self) -> bool:
        return self.action in ("alert", "alert_and_retrain", "alert_only_cooldown")


def decide(history: list[dict], breach: bool | None, check_date: dt.date, cooldown_days: int,
           retrain_delay_days: int) -> tuple[str, str, bool]:
    """Anti-flapping decision from earlier checks (oldest first, with ``check_date``, ``breach``,
    ``decision``, ``action``, ``episode_id``) and this check's breach.

    Returns:
        (decision, action, opens_episode).
    """
    episode = open_episode(history)
    if breach is None:
        return "insufficient_data", "none", False
    evaluable = [r["breach"] for r in history if r["breach"] is not None] + [breach]
    retrains = [r["check_date"] for r in history if r["action"] in RETRAIN_ACTIONS]
    cooling = bool(retrains) and (check_date - max(retrains)).days < cooldown_days
    if episode is not None:
        if len(evaluable) >= CLEAN_TO_CLOSE and not any(evaluable[-CLEAN_TO_CLOSE:]):
            return "recovered", "resolved", False
        rows = [r for r in history if r["episode_id"] == episode]
        opened = min(r["check_date"] for r in rows)
        retrained = any(r["action"] in RETRAIN_ACTIONS + ("retrain_skipped_cooldown",) for r in rows)
        if not retrained and (check_date - opened).days >= retrain_delay_days:
            return "drift", ("retrain_skipped_cooldown" if cooling else "retrain"), False
        return "drift", "none", False
    if breach and sum(evaluable[-OUT_OF:]) >= BREACHES_TO_OPEN:
        if retrain_delay_days > 0:
            return "drift", "alert", True
        return "drift", "alert_only_cooldown" if cooling else "alert_and_retrain", True
    return ("breach" if breach else "ok"), "none", False


def open_episode(history: list[dict]) -> int | None:
    """Episode id of the drift episode still open after ``history`` (oldest first), else None."""
    episode = None
    for row in history:
        if row["decision"] == "drift":
            episode = row.get("episode_id") or episode
        elif row["decision"] in ("recovered", "ok", "breach"):
            episode = None
    return episode


def retrain_since(engine: sa.Engine, episode_id: int, window_days: int) -> dt.date:
    """First outcome day a drift retraining learns from: the episode's opening day minus half a window.

    A breach shows once about half of the check window is affected, so that is where the change began.
    """
    with engine.connect() as conn:
        opened = conn.execute(sa.text("SELECT check_date FROM drift_checks WHERE id = :i"),
                              {"i": episode_id}).scalar_one()
    return opened - dt.timedelta(days=window_days // 2)


def is_breach(live: dict, baseline: dict, tolerance: float, n: int, min_n: int) -> bool | None:
    """True/False per the tolerance rule; None when the sample is too small or a class is missing."""
    if n < min_n:
        return None
    breached = []
    for target in DECISION_TARGETS:
        hi, base = live[target]["auc"]["hi"], baseline[target]["auc"]["value"]
        if hi is None or base is None:
            return None
        breached.append(hi < base - tolerance)
    return any(breached)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against quantile bins of ``reference``."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.histogram(reference, edges)[0] / len(reference)
    q = np.histogram(current, edges)[0] / len(current)
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _score_drift(engine, tier: str, version: int, check_date: dt.date, min_n: int) -> dict:
    days = read_frame(engine, "SELECT min(scored_for) AS first, max(scored_for) AS last FROM predictions "
                              "WHERE tier = %(t)s AND model_version = %(v)s AND scored_for <= %(d)s",
                      {"t": tier, "v": version, "d": check_date})
    if days["first"].isna().iloc[0] or days["first"].iloc[0] == days["last"].iloc[0]:
        return {"status": "insufficient_data", "why": "fewer than two scoring days for this model"}
    first, last = days["first"].iloc[0], days["last"].iloc[0]
    # Deciles need no more than ~100k scores a day: a fixed hash sample of clients (the same on both days).
    with engine.connect() as conn:
        n_last = conn.execute(sa.text("SELECT count(*) FROM predictions WHERE tier = :t AND model_version = :v "
                                      "AND scored_for = :d"), {"t": tier, "v": version, "d": last}).scalar_one()
    scores = read_frame(engine, "SELECT scored_for, purchase_likelihood, churn_risk FROM predictions "
                                "WHERE tier = %(t)s AND model_version = %(v)s AND scored_for IN (%(a)s, %(b)s) "
                                "AND (%(mod)s = 1 OR abs(hashtext(client_id)) %% %(mod)s = 0)",
                        {"t": tier, "v": version, "a": first, "b": last, "mod": max(1, n_last // _PSI_SAMPLE)})
    ref, cur = scores[scores["scored_for"] == first], scores[scores["scored_for"] == last]
    if min(len(ref), len(cur)) < min_n:
        return {"status": "insufficient_data", "why": f"{len(ref)} and {len(cur)} scores (need {min_n})"}
    return {"status": "ok", "reference_day": str(first), "current_day": str(last),
            "psi_purchase": round(psi(ref["purchase_likelihood"].to_numpy(), cur["purchase_likelihood"].to_numpy()), 4),
            "psi_churn": round(psi(ref["churn_risk"].to_numpy(), cur["churn_risk"].to_numpy()), 4)}


def _concept_mix_drift(engine, check_date: dt.date, min_n: int, recent_days: int = 30,
                       reference_days: int = 180, sample_notes: int = _MIX_SAMPLE) -> dict:
    """Concept shares of the last ``recent_days`` of notes against the ``reference_days`` before them.

    A fixed hash sample of notes (about ``sample_notes`` in the recent window; all of them in
    smaller worlds) keeps the cost bounded: its concepts are read by index, not by a scan of the
    whole concept table.
    """
    window = {"d": check_date, "r": recent_days, "ref": reference_days}
    with engine.connect() as conn:
        n_recent = conn.execute(sa.text("SELECT count(*) FROM notes WHERE date > :d - :r AND date <= :d"),
                                window).scalar_one()
    mod = max(1, n_recent // sample_notes)
    mix = read_frame(engine, """
        WITH sampled AS (
            SELECT note_id, date > %(d)s - %(r)s AS recent FROM notes
            WHERE date > %(d)s - %(r)s - %(ref)s AND date <= %(d)s
              AND (%(mod)s = 1 OR abs(hashtext(note_id)) %% %(mod)s = 0))
        SELECT c.concept_id, count(*) FILTER (WHERE s.recent) AS recent,
               count(*) FILTER (WHERE NOT s.recent) AS reference
        FROM sampled s JOIN note_concepts c USING (note_id)
        GROUP BY c.concept_id""", {**window, "mod": mod}, dtype={"concept_id": str})
    if mix.empty or min(mix["recent"].sum(), mix["reference"].sum()) < min_n:
        return {"status": "insufficient_data", "why": f"fewer than {min_n} concept rows in a window"}
    p = np.clip(mix["reference"] / mix["reference"].sum(), 1e-5, None)
    q = np.clip(mix["recent"] / mix["recent"].sum(), 1e-5, None)
    mix = mix.assign(change=q - p)
    movers = mix.reindex(mix["change"].abs().sort_values(ascending=False).index).head(5)
    return {"status": "ok", "psi": round(float(np.sum((q - p) * np.log(q / p))), 4),
            "top_movers": {r.concept_id: round(float(r.change), 4) for r in movers.itertuples()},
            "notes_sampled": f"1 in {mod}",
            "concept_rows": {"recent": int(mix["recent"].sum()), "reference": int(mix["reference"].sum())}}


def check_tier(engine: sa.Engine, settings: Settings, tier: str, check_date: dt.date,
               run_id: str | None = None) -> CheckResult | None:
    """Run one drift check of ``tier``'s champion and upsert it into ``drift_checks``; None without champion."""
    champion = Registry(engine, settings.model_store).champion(tier)
    if champion is None:
        return None
    start = check_date - dt.timedelta(days=settings.drift_window_days)
    matched = matched_outcomes(engine, {"tier": tier, "version": champion.version, "h": settings.horizon_days,
                                        "tol": settings.drift_match_days, "start": start, "end": check_date})
    Y = matched[["purchased", "churned", "lifetime_value"]].to_numpy(float)
    P = matched[["purchase_likelihood", "churn_risk", "predicted_clv"]].to_numpy(float)
    n = len(matched)
    enough = n >= settings.drift_min_n and all(0 < Y[:, c].sum() < n for c in (0, 1))
    # The diagnostics are database aggregations: they run while the live metrics are computed here.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="drift") as pool:
        score_psi = pool.submit(_score_drift, engine, tier, champion.version, check_date, 1000)
        concept_mix = pool.submit(_concept_mix_drift, engine, check_date, 1000)
        live = evaluate(Y, P, n_boot=settings.n_bootstrap, max_resample=10_000) if enough else {}
        diagnostics = {"score_psi": score_psi.result(), "concept_mix": concept_mix.result()}
    baseline = champion.metrics
    breach = is_breach(live, baseline, settings.drift_tolerance, n, settings.drift_min_n) if enough else None

    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('drift_checks:' || :t))"), {"t": tier})
        history = [r._asdict() for r in conn.execute(sa.text(
            "SELECT check_date, breach, decision, action, episode_id FROM drift_checks "
            "WHERE tier = :t AND check_date < :d ORDER BY check_date"), {"t": tier, "d": check_date})]
        decision, action, opens = decide(history, breach, check_date, settings.drift_cooldown_days,
                                         settings.drift_retrain_delay_days)
        current = open_episode(history)
        row = conn.execute(sa.text("""
            INSERT INTO drift_checks (check_date, tier, model_version, window_start, window_end, n, metrics,
                                      baseline, diagnostics, breach, decision, action, run_id, tolerance)
            VALUES (:d, :t, :v, :ws, :we, :n, CAST(:m AS jsonb), CAST(:b AS jsonb), CAST(:g AS jsonb), :br,
                    :dec, :act, :run, :tol)
            ON CONFLICT (check_date, tier) DO UPDATE SET model_version = EXCLUDED.model_version,
                window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end, n = EXCLUDED.n,
                metrics = EXCLUDED.metrics, baseline = EXCLUDED.baseline, diagnostics = EXCLUDED.diagnostics,
                breach = EXCLUDED.breach, decision = EXCLUDED.decision, action = EXCLUDED.action,
                run_id = EXCLUDED.run_id, tolerance = EXCLUDED.tolerance, created_at = now()
            RETURNING id"""), {
            "d": check_date, "t": tier, "v": champion.version, "ws": start + dt.timedelta(days=1),
            "we": check_date, "n": n, "m": json.dumps(live), "b": json.dumps(_baseline_summary(baseline)),
            "g": json.dumps(diagnostics), "br": breach, "dec": decision, "act": action, "run": run_id,
            "tol": settings.drift_tolerance}).one()
        episode = row.id if opens else current
        conn.execute(sa.text("UPDATE drift_checks SET episode_id = :e WHERE id = :i"), {"e": episode, "i": row.id})
    return CheckResult(tier, check_date, champion.version, n, breach, decision, action, episode, live,
                       _baseline_summary(baseline), diagnostics, row.id)


def _baseline_summary(metrics: dict) -> dict:
    return {t: {k: metrics[t][k] for k in ("auc", "brier", "accuracy", "r2", "mae") if k in metrics[t]}
            for t in ("purchase", "churn", "clv") if t in metrics}


def history(engine: sa.Engine, tier: str | None = None) -> pd.DataFrame:
    """Drift checks with live and baseline AUC per target, oldest first."""
    sql = ("SELECT check_date, tier, model_version, n, decision, action, episode_id, "
           " (metrics -> 'purchase' -> 'auc' ->> 'value')::float AS purchase_auc, "
           " (metrics -> 'churn' -> 'auc' ->> 'value')::float AS churn_auc, "
           " (metrics -> 'clv' -> 'r2' ->> 'value')::float AS clv_r2, "
           " (baseline -> 'purchase' -> 'auc' ->> 'value')::float AS purchase_auc_baseline, "
           " (baseline -> 'churn' -> 'auc' ->> 'value')::float AS churn_auc_baseline "
           "FROM drift_checks WHERE %(t)s::text IS NULL OR tier = %(t)s ORDER BY check_date, tier")
    return read_frame(engine, sql, {"t": tier})
