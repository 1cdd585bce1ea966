"""The drift check's store: reads served predictions, matured outcomes and the registry, applies the
rules of :mod:`mlcore.drift` and upserts one ``drift_checks`` row per tier and day.

Example:
    >>> from mlcore.monitoring import check_tier
    >>> check_tier(engine, settings, "elite", dt.date(2025, 6, 30)).decision  # doctest: +SKIP
    'ok'
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlcore import drift
from mlcore.config import Settings
from mlcore.db import advisory_xact_lock, read_frame
from mlcore.clv_baseline import purchase_days
from mlcore.estimation import ESTIMATED_TARGETS, estimate
from mlcore.evaluation import evaluate, stratified_auc
from mlcore.history_io import any_transactions
from mlcore.labels import LabelPolicy, outcomes_after

_PSI_SAMPLE = 100_000      # scores of the latest day for the score deciles and the estimate
_MATURED_SAMPLE = 100_000  # served predictions matured by their clients' transactions
_MIX_SAMPLE = 25_000       # recent notes for the concept mix

# Two forms of "each outcome with the latest prediction the tier served H to H + tol days before it".
# Probe: one index probe per outcome (LIMIT 1 reads one index entry even when every day was
# scored); Postgres never runs a LATERAL subquery with LIMIT in parallel workers, so the outcomes
# are split by a hash of the client into ``parts`` queries run side by side. Best when the
# predictions that could match far outnumber the outcomes (nightly scoring of every client).
_MATCHED = """
SELECT o.purchased, o.churned, o.lifetime_value, p.purchase_likelihood, p.churn_risk, p.predicted_clv,
       p.model_version
FROM outcomes o
JOIN LATERAL (
    SELECT purchase_likelihood, churn_risk, predicted_clv, model_version FROM predictions p
    WHERE p.tier = %(tier)s AND p.client_id = o.client_id
      AND p.scored_for <= o.date - %(h)s AND p.scored_for >= o.date - %(h)s - %(tol)s
    ORDER BY p.scored_for DESC LIMIT 1) p ON true
WHERE o.date > %(start)s AND o.date <= %(end)s
  AND (%(parts)s = 1 OR abs(hashtext(o.client_id)) %% %(parts)s = %(part)s)
"""
# Join: one set-based pass (parallel hash join), then the latest per outcome. Best when there are
# about as many candidate predictions as outcomes (2x faster than the probes on 1M of each).
_MATCHED_JOIN = """
SELECT DISTINCT ON (o.client_id, o.date)
       o.purchased, o.churned, o.lifetime_value, p.purchase_likelihood, p.churn_risk, p.predicted_clv,
       p.model_version
FROM outcomes o
JOIN predictions p ON p.client_id = o.client_id
 AND p.scored_for <= o.date - %(h)s AND p.scored_for >= o.date - %(h)s - %(tol)s
WHERE o.date > %(start)s AND o.date <= %(end)s
  AND p.tier = %(tier)s
  AND p.scored_for > %(start)s - %(h)s - %(tol)s AND p.scored_for <= %(end)s - %(h)s
ORDER BY o.client_id, o.date, p.scored_for DESC
"""
_MATCH_PARTS = 2
_JOIN_WHEN_CANDIDATES_PER_OUTCOME = 3.0


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One drift check of a tier, as recorded in ``drift_checks``."""

    tier: str
    check_date: dt.date
    model_version: int | None
    n: int
    breach: bool | None
    decision: str
    action: str
    episode_id: int | None
    live: dict
    baseline: dict
    diagnostics: dict
    id: int
    versions: dict = dataclasses.field(default_factory=dict)
    estimate: dict = dataclasses.field(default_factory=dict)
    estimate_drop: bool | None = None
    estimate_decision: str = "unavailable"
    estimate_action: str = "none"
    estimate_episode_id: int | None = None
    since: dt.date | None = None

    @property
    def wants_retrain(self) -> bool:
        return self.action in drift.RETRAIN_ACTIONS

    @property
    def wants_alert(self) -> bool:
        return self.action in drift.ALERT_ACTIONS

    @property
    def wants_warning(self) -> bool:
        return self.estimate_action == "warn"


@dataclasses.dataclass(frozen=True)
class AlertSpec:
    """An alert a check asks for: delivered by the DAG's notifier, recorded by the CLI."""

    kind: str
    tier: str
    dedup_key: str
    title: str
    payload: dict


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
    """Outcomes of the window with the prediction served for them (and its model version)."""
    candidates, outcomes = _estimated_rows(engine, [
        "SELECT 1 FROM predictions WHERE tier = %(tier)s "
        "AND scored_for > %(start)s - %(h)s - %(tol)s AND scored_for <= %(end)s - %(h)s",
        "SELECT 1 FROM outcomes WHERE date > %(start)s AND date <= %(end)s"], params)
    if candidates <= _JOIN_WHEN_CANDIDATES_PER_OUTCOME * max(outcomes, 1.0):
        return read_frame(engine, _MATCHED_JOIN, params)
    with ThreadPoolExecutor(max_workers=_MATCH_PARTS, thread_name_prefix="drift-match") as pool:
        parts = pool.map(lambda k: read_frame(engine, _MATCHED, {**params, "parts": _MATCH_PARTS, "part": k}),
                         range(_MATCH_PARTS))
        return pd.concat(list(parts), ignore_index=True)


_MATCHED_COLUMNS = ["purchased", "churned", "lifetime_value", "purchase_likelihood", "churn_risk",
                    "predicted_clv", "model_version"]


def matured_by_transactions(engine, settings: Settings, tier: str, start: dt.date, end: dt.date) -> tuple[pd.DataFrame, dict]:
    """Served predictions whose H-day window has passed, with the outcome their clients' transactions give.

    The labels are the label policy's (:func:`mlcore.labels.outcomes_after`), as training derives
    them: a prediction served on s matures on s + H, within (``start``, ``end``] and no later than
    the newest transaction loaded (a feed that lags is not read as clients who stopped buying).
    Each client counts once, at its latest matured prediction: the latest scoring day when it holds
    at least ``drift_min_n`` scores (a fixed hash sample of ~100k of them), else each client's latest
    over the window. Outcome dates the explicit log covers are left to it.

    Returns:
        (matched rows like :func:`matched_outcomes`, a description of where the labels came from).
    """
    H = settings.horizon_days
    with engine.connect() as conn:
        through = conn.execute(sa.text("SELECT max(date) FROM transactions WHERE date <= :e"), {"e": end}).scalar_one()
        if through is None or through <= start:
            return pd.DataFrame(columns=_MATCHED_COLUMNS), {"derived": 0, "why": "no transactions in the window"}
        window = {"t": tier, "lo": start - dt.timedelta(days=H), "hi": through - dt.timedelta(days=H)}
        last = conn.execute(sa.text("SELECT max(scored_for) FROM predictions WHERE tier = :t AND scored_for > :lo "
                                    "AND scored_for <= :hi"), window).scalar_one()
        if last is None:
            return pd.DataFrame(columns=_MATCHED_COLUMNS), {"derived": 0, "through": str(through),
                                                            "why": "no prediction served H days before the window"}
        n_last = conn.execute(sa.text("SELECT count(*) FROM predictions WHERE tier = :t AND scored_for = :d"),
                              {"t": tier, "d": last}).scalar_one()
        covered = {r[0] for r in conn.execute(sa.text(
            "SELECT DISTINCT date FROM outcomes WHERE date > :s AND date <= :e"), {"s": start, "e": through})}
    mod = max(1, n_last // _MATURED_SAMPLE)
    params = {**window, "mod": mod, "last": last}
    sample = "(%(mod)s = 1 OR abs(hashtext(client_id)) %% %(mod)s = 0)"
    if n_last >= settings.drift_min_n:
        served = read_frame(engine, "SELECT client_id, scored_for AS as_of, purchase_likelihood, churn_risk, "
                                    "predicted_clv, model_version FROM predictions WHERE tier = %(t)s "
                                    f"AND scored_for = %(last)s AND {sample}", params,
                            dtype={"client_id": str}, parse_dates=["as_of"])
    else:
        served = read_frame(engine, "SELECT DISTINCT ON (client_id) client_id, scored_for AS as_of, "
                                    "purchase_likelihood, churn_risk, predicted_clv, model_version FROM predictions "
                                    "WHERE tier = %(t)s AND scored_for > %(lo)s AND scored_for <= %(hi)s "
                                    "ORDER BY client_id, scored_for DESC", params,
                            dtype={"client_id": str}, parse_dates=["as_of"])
    policy = LabelPolicy(horizon_days=H)
    matures = (served["as_of"] + pd.Timedelta(days=H)).dt.date
    served = served[~matures.isin(covered)].reset_index(drop=True)
    about = {"derived": len(served), "through": str(through), "sampled": f"1 in {mod}",
             "served_since": str(served["as_of"].min().date()) if len(served) else None}
    if served.empty:
        return pd.DataFrame(columns=_MATCHED_COLUMNS), about
    tx = read_frame(engine, "SELECT client_id, date, amount FROM transactions WHERE date > %(a)s AND date <= %(b)s "
                            f"AND {sample}",
                    {"a": served["as_of"].min().date() - dt.timedelta(days=policy.active),
                     "b": served["as_of"].max().date() + dt.timedelta(days=H), "mod": mod},
                    dtype={"client_id": str}, parse_dates=["date"])
    labels = outcomes_after(purchase_days(tx), served[["client_id", "as_of"]], policy)
    matched = pd.concat([labels[["purchased", "churned", "lifetime_value"]], served[_MATCHED_COLUMNS[3:]]], axis=1)
    return matched, about


def version_metrics(engine, tier: str, versions) -> dict[int, dict]:
    """Validation metrics of the given versions of ``tier``."""
    versions = sorted({int(v) for v in versions})
    if not versions:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT version, metrics FROM model_versions WHERE tier = :t "
                                    "AND version = ANY(:v)"), {"t": tier, "v": versions}).all()
    return {r.version: (r.metrics if isinstance(r.metrics, dict) else json.loads(r.metrics)) for r in rows}


def live_metrics(matched: pd.DataFrame, metrics_of: dict, settings: Settings) -> tuple[dict, dict, dict]:
    """Live metrics of the served predictions, their version mix and its weighted validation baseline.

    The AUC of each classifier is stratified by model version (:func:`mlcore.evaluation.stratified_auc`);
    the other metrics are pooled over the matches.

    Returns:
        (live, baseline, versions) where ``versions`` maps each version to its number of matches.
    """
    Y = matched[["purchased", "churned", "lifetime_value"]].to_numpy(float)
    P = matched[["purchase_likelihood", "churn_risk", "predicted_clv"]].to_numpy(float)
    version = matched["model_version"].to_numpy()
    live = evaluate(Y, P, n_boot=settings.n_bootstrap, max_resample=10_000)
    weights = {}
    for target, col in (("purchase", 0), ("churn", 1)):
        strat = stratified_auc(Y[:, col], P[:, col], version, n_boot=settings.n_bootstrap, max_resample=10_000)
        live[target]["pooled_auc"] = live[target]["auc"]
        live[target]["auc"] = {k: strat[k] for k in ("value", "lo", "hi")}
        live[target]["auc_by_version"] = {v: g["auc"] for v, g in strat["groups"].items()}
        weights[target] = {int(v): g["weight"] for v, g in strat["groups"].items()}
    baseline = drift.weighted_baseline(metrics_of, weights)
    for target in drift.DECISION_TARGETS:
        auc = live[target]["auc"]
        auc["upper_vs_baseline"] = _round(drift.upper_bound(auc, baseline[target]["auc"]))
        # the smallest drop below the baseline this check could call a breach, at this volume
        auc["detectable_drop"] = (None if auc["upper_vs_baseline"] is None else
                                  _round(settings.drift_tolerance + auc["upper_vs_baseline"] - auc["value"]))
    clv = {}
    for v, m in metrics_of.items():
        share = float(np.mean(version == v))
        for key in ("r2", "mae"):
            value = m.get("clv", {}).get(key, {}).get("value")
            if value is not None and share:
                clv[key] = clv.get(key, 0.0) + share * value
    baseline["clv"] = {k: {"value": round(v, 6)} for k, v in clv.items()}
    versions = {str(v): int(k) for v, k in zip(*np.unique(version, return_counts=True))}
    return live, baseline, versions


def _unmatured_scores(engine, tier: str, check_date: dt.date, horizon: int, min_n: int):
    """The tier's served scores whose outcomes have not matured, as of ``check_date``.

    The latest scoring day when it has at least ``min_n`` scores (nightly scoring of every client;
    a fixed hash sample of ~100k of them), else the latest score of each client over the last H days
    (scoring on upload serves a few clients a day).

    Returns:
        (description, scores with ``model_version``, ``purchase_likelihood``, ``churn_risk``).
    """
    with engine.connect() as conn:
        last = conn.execute(sa.text("SELECT max(scored_for) FROM predictions WHERE tier = :t AND scored_for <= :d"),
                            {"t": tier, "d": check_date}).scalar_one()
        if last is None:
            return None, pd.DataFrame()
        n_last = conn.execute(sa.text("SELECT count(*) FROM predictions WHERE tier = :t AND scored_for = :d"),
                              {"t": tier, "d": last}).scalar_one()
    if n_last >= min_n:
        scores = read_frame(engine, "SELECT model_version, purchase_likelihood, churn_risk FROM predictions "
                                    "WHERE tier = %(t)s AND scored_for = %(d)s "
                                    "AND (%(mod)s = 1 OR abs(hashtext(client_id)) %% %(mod)s = 0)",
                            {"t": tier, "d": last, "mod": max(1, n_last // _PSI_SAMPLE)})
        return {"scored_for": str(last), "age_days": (check_date - last).days}, scores
    scores = read_frame(engine, "SELECT DISTINCT ON (client_id) model_version, purchase_likelihood, churn_risk "
                                "FROM predictions WHERE tier = %(t)s AND scored_for > %(d)s - %(h)s "
                                "AND scored_for <= %(d)s ORDER BY client_id, scored_for DESC",
                        {"t": tier, "d": check_date, "h": horizon})
    return {"scored_for": str(last), "scored_since": str(check_date - dt.timedelta(days=horizon - 1)),
            "age_days": (check_date - last).days}, scores


def _estimate_and_psi(engine, settings: Settings, tier: str, check_date: dt.date, min_n: int):
    """Label-free estimate and score PSI of the unmatured served scores, against their versions' validation."""
    where, scores = _unmatured_scores(engine, tier, check_date, settings.horizon_days, min_n)
    if where is None or len(scores) < min_n:
        why = "no scores yet" if where is None else f"{len(scores)} unmatured scores (need {min_n})"
        return {"status": "insufficient_data", "why": why}, {"status": "insufficient_data", "why": why}
    versions = scores["model_version"].to_numpy()
    metrics_of = version_metrics(engine, tier, np.unique(versions))
    est = estimate({t: scores[c].to_numpy(float) for t, c in ESTIMATED_TARGETS.items()}, metrics_of, versions,
                   settings.estimate_max_ece)
    main = int(scores["model_version"].mode().iloc[0])
    est.update(status="ok", n=len(scores), model_version=main,
               versions={str(v): int(k) for v, k in zip(*np.unique(versions, return_counts=True))}, **where)
    psi = {"status": "ok", "model_version": main, "reference": f"v{main}'s validation deciles", **where}
    for t, column in ESTIMATED_TARGETS.items():
        edges = metrics_of.get(main, {}).get(t, {}).get("score_deciles")
        if edges is None:
            psi = {"status": "insufficient_data", "why": f"v{main} has no validation deciles (trained before them)"}
            break
        psi[f"psi_{t}"] = round(drift.psi_from_edges(edges, None, scores.loc[versions == main, column].to_numpy(float)), 4)
    return est, psi


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


def _round(x):
    return None if x is None else round(x, 6)


def _champion_version(engine, tier: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT version FROM model_versions WHERE tier = :t AND status = 'champion'"),
                            {"t": tier}).scalar_one_or_none()


def check_tier(engine: sa.Engine, settings: Settings, tier: str, check_date: dt.date,
               run_id: str | None = None) -> CheckResult | None:
    """Run one drift check of what ``tier`` served and upsert it into ``drift_checks``.

    Returns None when the tier has neither a champion nor any served prediction (nothing to watch).
    """
    champion = _champion_version(engine, tier)
    start = check_date - dt.timedelta(days=settings.drift_window_days)
    matched = matched_outcomes(engine, {"tier": tier, "h": settings.horizon_days, "tol": settings.match_days(tier),
                                        "start": start, "end": check_date})
    sources = {"outcome_log": len(matched)}
    if any_transactions(engine):     # the outcome dates the log does not cover, from what clients bought
        derived, sources["transactions"] = matured_by_transactions(engine, settings, tier, start, check_date)
        matched = pd.concat([matched, derived], ignore_index=True) if len(derived) else matched
    n = len(matched)
    metrics_of = version_metrics(engine, tier, matched["model_version"].unique()) if n else {}
    # The diagnostics and the estimate are database reads: they run while the live metrics are computed here.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="drift") as pool:
        est_psi = pool.submit(_estimate_and_psi, engine, settings, tier, check_date, 200)
        concept_mix = pool.submit(_concept_mix_drift, engine, check_date, 1000)
        live, baseline, versions = (live_metrics(matched, metrics_of, settings) if n
                                    else ({}, {t: {"auc": {"value": None}} for t in drift.DECISION_TARGETS}, {}))
        est, score_psi = est_psi.result()
        diagnostics = {"score_psi": score_psi, "concept_mix": concept_mix.result(), "outcomes": sources}
    if champion is None and not n and est.get("status") != "ok":
        return None
    breach = drift.is_breach(live, baseline, settings.drift_tolerance, n, settings.drift_min_n) if n else None
    drop = drift.is_estimated_drop(est, settings.drift_tolerance) if est.get("status") == "ok" else None
    row = _record(engine, settings, tier, check_date, champion, start, n, live, baseline, diagnostics, breach,
                  versions, est, drop, run_id)
    since = None
    if row["action"] in drift.RETRAIN_ACTIONS:
        since = drift.retrain_since(row["opened"], settings.drift_window_days)
    return CheckResult(tier, check_date, champion, n, breach, row["decision"], row["action"], row["episode_id"],
                       live, baseline, diagnostics, row["id"], versions, est, drop, row["estimate_decision"],
                       row["estimate_action"], row["estimate_episode_id"], since)


def _record(engine, settings, tier, check_date, champion, start, n, live, baseline, diagnostics, breach,
            versions, est, drop, run_id) -> dict:
    """Decide from the tier's earlier checks and upsert this one, in one transaction per tier."""
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
        advisory_xact_lock(conn, f"drift_checks:{tier}", timeout=60)
        history = [_with_recovery(r._asdict(), settings.drift_tolerance) for r in conn.execute(sa.text(
            "SELECT id, check_date, breach, decision, action, episode_id, estimate_drop, estimate_decision, "
            " estimate_episode_id, metrics, baseline, tolerance FROM drift_checks "
            "WHERE tier = :t AND check_date < :d ORDER BY check_date"), {"t": tier, "d": check_date})]
        recovered = drift.is_recovered(live, baseline, settings.drift_tolerance) if breach is not None else None
        decision, action, opens = drift.decide(history, breach, check_date, settings.drift_cooldown_days,
                                               settings.drift_retrain_delay_days, recovered)
        current = drift.open_episode(history)
        est_decision, est_action, est_opens = drift.decide_estimate(history, drop, decision == "drift")
        est_current = drift.open_episode(history, "estimate_decision", "estimate_episode_id", "estimated_drop")
        row = conn.execute(sa.text("""
            INSERT INTO drift_checks (check_date, tier, model_version, window_start, window_end, n, metrics,
                                      baseline, diagnostics, breach, decision, action, run_id, tolerance,
                                      versions, estimate, estimate_drop, estimate_decision, estimate_action)
            VALUES (:d, :t, :v, :ws, :we, :n, CAST(:m AS jsonb), CAST(:b AS jsonb), CAST(:g AS jsonb), :br,
                    :dec, :act, :run, :tol, CAST(:vs AS jsonb), CAST(:est AS jsonb), :drop, :edec, :eact)
            ON CONFLICT (check_date, tier) DO UPDATE SET model_version = EXCLUDED.model_version,
                window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end, n = EXCLUDED.n,
                metrics = EXCLUDED.metrics, baseline = EXCLUDED.baseline, diagnostics = EXCLUDED.diagnostics,
                breach = EXCLUDED.breach, decision = EXCLUDED.decision, action = EXCLUDED.action,
                run_id = EXCLUDED.run_id, tolerance = EXCLUDED.tolerance, versions = EXCLUDED.versions,
                estimate = EXCLUDED.estimate, estimate_drop = EXCLUDED.estimate_drop,
                estimate_decision = EXCLUDED.estimate_decision, estimate_action = EXCLUDED.estimate_action,
                created_at = now()
            RETURNING id"""), {
            "d": check_date, "t": tier, "v": champion or 0, "ws": start + dt.timedelta(days=1),
            "we": check_date, "n": n, "m": json.dumps(live), "b": json.dumps(baseline),
            "g": json.dumps(diagnostics), "br": breach, "dec": decision, "act": action, "run": run_id,
            "tol": settings.drift_tolerance, "vs": json.dumps(versions), "est": json.dumps(est), "drop": drop,
            "edec": est_decision, "eact": est_action}).one()
        episode = row.id if opens else current
        est_episode = row.id if est_opens else (
            est_current if est_decision in ("estimated_drop", "estimated_recovered") else None)
        conn.execute(sa.text("UPDATE drift_checks SET episode_id = :e, estimate_episode_id = :x WHERE id = :i"),
                     {"e": episode, "x": est_episode, "i": row.id})
        opened = check_date
        if episode is not None and episode != row.id:
            opened = conn.execute(sa.text("SELECT check_date FROM drift_checks WHERE id = :i"),
                                  {"i": episode}).scalar_one()
    return {"id": row.id, "decision": decision, "action": action, "episode_id": episode, "opened": opened,
            "estimate_decision": est_decision, "estimate_action": est_action, "estimate_episode_id": est_episode}


def _with_recovery(row: dict, default_tolerance: float) -> dict:
    """An earlier check as :func:`drift.decide` reads it: its metrics replaced by whether it had recovered."""
    live, baseline, tolerance = row.pop("metrics"), row.pop("baseline"), row.pop("tolerance")
    row["recovered"] = (None if row["breach"] is None else
                        drift.is_recovered(live, baseline, default_tolerance if tolerance is None else tolerance))
    return row


def _aucs(metrics: dict) -> dict:
    """The AUC value of each decision target in a live or baseline metrics dict."""
    return {t: (metrics.get(t) or {}).get("auc", {}).get("value") for t in drift.DECISION_TARGETS}


def alerts_for(result: CheckResult) -> list[AlertSpec]:
    """The alerts a check asks for: one per new realized drift episode, one warning per new estimated one."""
    out = []
    if result.wants_alert:
        out.append(AlertSpec(
            "drift", result.tier, f"drift:{result.tier}:{result.episode_id}",
            f"Drift: {result.tier} live AUC of the served predictions below their validation baseline on "
            f"{result.check_date}",
            {"tier": result.tier, "check_date": str(result.check_date), "n": result.n, "decision": result.decision,
             "action": result.action, "episode_id": result.episode_id, "served_versions": result.versions,
             "live_auc": _aucs(result.live), "baseline_auc": _aucs(result.baseline)}))
    if result.wants_warning:
        est = result.estimate
        out.append(AlertSpec(
            "drift_estimate", result.tier, f"drift_estimate:{result.tier}:{result.estimate_episode_id}",
            f"Warning: {result.tier} v{est.get('model_version')} estimated AUC (no labels yet) below its "
            f"validation estimate on {result.check_date}",
            {"tier": result.tier, "check_date": str(result.check_date), "estimated": True,
             "scored_for": est.get("scored_for"), "model_version": est.get("model_version"),
             "episode_id": result.estimate_episode_id,
             "estimated_auc": {t: est[t]["value"] for t in drift.DECISION_TARGETS if t in est},
             "reference_auc": {t: est[t]["reference"] for t in drift.DECISION_TARGETS if t in est},
             "ece": {t: est[t]["ece"] for t in drift.DECISION_TARGETS if t in est}}))
    return out


def summary(result: CheckResult) -> dict:
    """A JSON-ready summary of a check (the DAG task's return value and the CLI's line)."""
    return {"tier": result.tier, "check_date": str(result.check_date), "model_version": result.model_version,
            "n": result.n, "breach": result.breach, "decision": result.decision, "action": result.action,
            "episode_id": result.episode_id, "served_versions": result.versions, "live_auc": _aucs(result.live),
            "baseline_auc": _aucs(result.baseline), "estimate_decision": result.estimate_decision,
            "estimate_action": result.estimate_action, "estimate_episode_id": result.estimate_episode_id,
            "estimated_auc": {t: (result.estimate.get(t) or {}).get("value") for t in drift.DECISION_TARGETS},
            "wants_alert": result.wants_alert, "wants_retrain": result.wants_retrain,
            "wants_warning": result.wants_warning, "since": str(result.since) if result.since else None}


def history(engine: sa.Engine, tier: str | None = None) -> pd.DataFrame:
    """Drift checks with live and baseline AUC per target and the estimate, oldest first."""
    sql = ("SELECT l.check_date, l.tier, l.model_version, l.n, l.decision, d.action, d.episode_id, "
           " l.purchase_auc, l.churn_auc, l.clv_r2, l.purchase_auc_baseline, l.churn_auc_baseline, "
           " l.est_purchase_auc, l.est_churn_auc, l.est_purchase_auc_reference, l.est_churn_auc_reference, "
           " l.estimate_decision, d.estimate_action, l.served_versions::text AS served_versions "
           "FROM live_performance l JOIN drift_checks d USING (check_date, tier) "
           "WHERE %(t)s::text IS NULL OR l.tier = %(t)s ORDER BY l.check_date, l.tier")
    return read_frame(engine, sql, {"t": tier})
