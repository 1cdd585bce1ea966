"""Model health: one JSON-ready summary of each tier's champion, live accuracy, drift and scores.

It reads the analyst views (``model_registry``, ``live_performance``, ``drift_history``) and the
latest scores, so the Model Health page shows what an analyst's SQL would.

Example:
    >>> from mlcore.health import model_health
    >>> model_health(engine)["tiers"]["elite"]["champion"]["version"]  # doctest: +SKIP
    3
"""
from __future__ import annotations

import datetime as dt
import math

import sqlalchemy as sa

from mlcore.tiers import TIERS

_TARGET_METRICS = {"purchase": ("auc", "accuracy", "brier"), "churn": ("auc", "accuracy", "brier"),
                   "clv": ("r2", "rmse", "mae")}


def _jsonable(value):
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rows(conn, sql: str, **params) -> list[dict]:
    return [{k: _jsonable(v) for k, v in r._asdict().items()} for r in conn.execute(sa.text(sql), params)]


def _champion(conn, tier: str) -> dict | None:
    row = conn.execute(sa.text(
        "SELECT version, reason, as_of, trained_at, promoted_at, n_train, n_valid, metrics "
        "FROM model_versions WHERE tier = :t AND status = 'champion'"), {"t": tier}).one_or_none()
    if row is None:
        return None
    m = row.metrics
    metrics = {target: {name: m[target][name] for name in names if name in m.get(target, {})}
               | {"baseline": m.get(target, {}).get("baseline", {}),
                  "calibration": {k: (m[target].get("calibration") or {}).get(k) for k in ("ece", "ece_noise")},
                  "selection": m.get(target, {}).get("selection")}
               for target, names in _TARGET_METRICS.items() if target in m}
    return {"version": row.version, "reason": row.reason, "as_of": _jsonable(row.as_of),
            "trained_at": _jsonable(row.trained_at), "promoted_at": _jsonable(row.promoted_at),
            "n_train": row.n_train, "n_valid": row.n_valid, "metrics": metrics}


def _score_distribution(conn, tier: str, bins: int) -> dict | None:
    day = conn.execute(sa.text("SELECT max(scored_for) FROM predictions WHERE tier = :t"), {"t": tier}).scalar_one()
    if day is None:
        return None
    out = {"scored_for": day.isoformat(), "bins": bins}
    for column in ("purchase_likelihood", "churn_risk"):
        counts = dict(conn.execute(sa.text(
            f"SELECT least(width_bucket({column}, 0, 1, :b), :b) AS bucket, count(*) FROM predictions "
            "WHERE tier = :t AND scored_for = :d GROUP BY 1"), {"t": tier, "d": day, "b": bins}).all())
        out[column] = [int(counts.get(i, 0)) for i in range(1, bins + 1)]
    stats = conn.execute(sa.text(
        "SELECT count(*) AS n, avg(purchase_likelihood) AS mean_purchase, avg(churn_risk) AS mean_churn, "
        " avg(predicted_clv) AS mean_clv, "
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY predicted_clv) AS median_clv "
        "FROM predictions WHERE tier = :t AND scored_for = :d"), {"t": tier, "d": day}).one()._asdict()
    out.update({k: (int(v) if k == "n" else round(float(v), 6)) for k, v in stats.items()})
    return out


def model_health(engine: sa.Engine, days: int = 120, bins: int = 20) -> dict:
    """Everything the Model Health page shows, for the last ``days`` days of checks.

    Returns:
        ``{"generated_at", "tiers": {tier: {"champion", "live", "retrainings", "scores"}}, "alerts"}``;
        ``live`` holds one entry per drift check (realized AUC per target with its interval, the
        baseline of the served versions, the breach threshold, CLV R2 and MAE, the decision and
        action; and the *estimated* AUC of the predictions not yet matured, with its band, its
        validation reference, the ECE it relies on and its own decision).
    """
    out = {"generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "tiers": {}}
    with engine.connect() as conn:
        since = conn.execute(sa.text("SELECT coalesce(max(check_date), current_date) - :d FROM drift_checks"),
                             {"d": days}).scalar_one()
        for tier in TIERS:
            live = _rows(conn, """
                SELECT l.check_date, l.model_version, l.n, l.decision, h.action, h.episode_id,
                       l.purchase_auc, l.purchase_auc_lo, l.purchase_auc_hi, l.purchase_auc_baseline,
                       l.purchase_auc_baseline - l.tolerance AS purchase_threshold,
                       l.churn_auc, l.churn_auc_lo, l.churn_auc_hi, l.churn_auc_baseline,
                       l.churn_auc_baseline - l.tolerance AS churn_threshold,
                       l.clv_r2, l.clv_mae, h.score_psi_purchase, h.concept_mix_psi,
                       l.served_versions, l.estimated_for, l.estimated_model_version,
                       l.est_purchase_auc, l.est_purchase_auc_lo, l.est_purchase_auc_hi, l.est_purchase_auc_reference,
                       l.est_churn_auc, l.est_churn_auc_lo, l.est_churn_auc_hi, l.est_churn_auc_reference,
                       l.purchase_ece, l.churn_ece, l.estimate_decision, h.estimate_action
                FROM live_performance l
                JOIN drift_history h USING (check_date, tier)
                WHERE l.tier = :t AND l.check_date > :since
                ORDER BY l.check_date""", t=tier, since=since)
            retrainings = _rows(conn, """
                SELECT version, reason, status, trained_at, as_of, promoted_at, gate_decision,
                       purchase_auc, churn_auc, clv_r2
                FROM model_registry WHERE tier = :t ORDER BY version""", t=tier)
            out["tiers"][tier] = {"champion": _champion(conn, tier), "live": live, "retrainings": retrainings,
                                  "scores": _score_distribution(conn, tier, bins)}
        out["alerts"] = _rows(conn, """
            SELECT id, created_at, kind, tier, title, status, repeats, dedup_key
            FROM alerts ORDER BY created_at DESC, id DESC LIMIT 50""")
    return out
