"""Training: point-in-time rows from the outcome log, a time split, validation and the promotion gate.

A training row pairs the outcome logged on day d with features built as of d - H. The newest
``valid_days`` of outcomes validate; training uses outcomes at least ``embargo`` days older than
the validation window, so no label the model learned from was observed after the features of a
validation row were built. The validated pipeline is the artifact: it is not refitted.

Example:
    >>> from mlcore.training import train_tier
    >>> train_tier(engine, settings, "elite", reason="manual")  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlcore.clv_baseline import baseline_for_rows, purchase_days
from mlcore.config import Settings
from mlcore.estimation import estimate_auc
from mlcore.evaluation import (CLASSIFIER_METRICS, CLASSIFIERS, REGRESSOR_METRICS, bootstrap, calibration, evaluate,
                               headline)
from mlcore.exceptions import InputDataError
from mlcore.features import History, build_history
from mlcore.history_io import (any_transactions, outcome_clients, read_notes, read_outcomes, read_transactions,
                               transaction_clients)
from mlcore.labels import LabelPolicy, combine, outcomes_from_purchase_days
from mlcore.progress import Progress
from mlcore.registry import ModelVersion, Registry
from mlcore.tiers import TARGETS, make_pipeline_for, selection_of, set_horizon, set_selection_window

log = logging.getLogger(__name__)
REASONS = ("schedule", "drift", "manual")
MIN_TRAIN_ROWS = 200
MIN_VALID_ROWS = 50


@dataclasses.dataclass
class TrainingSet:
    history: History
    y: np.ndarray
    dates: pd.Series


@dataclasses.dataclass(frozen=True)
class TrainResult:
    model: ModelVersion
    promoted: bool
    gate: dict
    metrics: dict
    fit_seconds: float
    n_train: int
    n_valid: int


def training_set(outcomes: pd.DataFrame, notes: pd.DataFrame, concepts: pd.DataFrame,
                 horizon_days: int, purchases: pd.DataFrame | None = None) -> TrainingSet:
    """Rows of the outcome log paired with histories as of (date - H); rows with neither a note nor a
    purchase day by then are dropped."""
    samples = pd.DataFrame({"client_id": outcomes["client_id"].to_numpy(),
                            "as_of": pd.to_datetime(outcomes["date"]) - pd.Timedelta(days=horizon_days)})
    history = build_history(samples, notes, concepts, purchases)
    known = (np.bincount(history.notes["row"].to_numpy(), minlength=len(samples))
             + np.bincount(history.purchases["row"].to_numpy(), minlength=len(samples))) > 0
    keep = np.flatnonzero(known)
    return TrainingSet(history.take(keep), outcomes[list(TARGETS)].to_numpy(dtype=float)[keep],
                       pd.to_datetime(outcomes["date"]).iloc[keep].reset_index(drop=True))


def sample_clients(client_ids: pd.Series, max_clients: int | None, random_state: int = 0) -> list[str] | None:
    """A fixed random sample of at most ``max_clients`` distinct clients, or None when all fit."""
    unique = np.sort(client_ids.unique())
    if max_clients is None or len(unique) <= max_clients:
        return None
    rng = np.random.default_rng(random_state)
    return sorted(unique[rng.choice(len(unique), size=max_clients, replace=False)])


def time_split(dates: pd.Series, as_of: dt.date, valid_days: int, embargo_days: int):
    """Positions of training and validation rows, and the windows they cover."""
    end = pd.Timestamp(as_of)
    valid_start = end - pd.Timedelta(days=valid_days - 1)
    train_end = valid_start - pd.Timedelta(days=embargo_days + 1)
    d = dates.to_numpy()
    valid = np.flatnonzero((d >= valid_start.to_datetime64()) & (d <= end.to_datetime64()))
    train = np.flatnonzero(d <= train_end.to_datetime64())
    windows = {
        "train_start": dates.iloc[train].min().date() if len(train) else None,
        "train_end": train_end.date(),
        "valid_start": valid_start.date(),
        "valid_end": end.date(),
    }
    return train, valid, windows


def thin_rows(train: np.ndarray, dates: pd.Series, max_rows: int | None, since: dt.date | None = None,
              random_state: int = 0) -> np.ndarray:
    """At most ``max_rows`` of the training positions ``train``: a fixed random sample, in order.

    Rows dated on or after ``since`` (a drift retraining's new relationship) are all kept; the
    sample is drawn from the older ones.
    """
    if max_rows is None or len(train) <= max_rows:
        return train
    keep = np.zeros(len(train), dtype=bool)
    if since is not None:
        keep = (dates.iloc[train] >= pd.Timestamp(since)).to_numpy(copy=True)
    # More rows than max_rows, so the older ones outnumber the room left beside the recent ones.
    older = np.flatnonzero(~keep)
    room = max(max_rows - int(keep.sum()), 0)
    keep[np.random.default_rng(random_state).choice(older, size=room, replace=False)] = True
    return train[keep]


def _check_split(ts: TrainingSet, train, valid, windows, as_of):
    problems = []
    if len(train) < MIN_TRAIN_ROWS:
        problems.append(f"{len(train)} training rows with outcomes on or before {windows['train_end']} "
                        f"(need {MIN_TRAIN_ROWS})")
    if len(valid) < MIN_VALID_ROWS:
        problems.append(f"{len(valid)} validation rows between {windows['valid_start']} and "
                        f"{windows['valid_end']} (need {MIN_VALID_ROWS})")
    for name, col in (("purchased", 0), ("churned", 1)):
        for part, idx in (("training", train), ("validation", valid)):
            if len(idx) and len(np.unique(ts.y[idx, col])) < 2:
                problems.append(f"the {part} rows have only one value of {name}")
    if problems:
        raise InputDataError(f"cannot train as of {as_of}: " + "; ".join(problems) + ". Load more outcomes, "
                             "choose a later --as-of, or shorten CLIENT_SCORING_VALID_DAYS / EMBARGO_DAYS.")


def train_tier(engine: sa.Engine, settings: Settings, tier: str, as_of: dt.date | None = None,
               reason: str = "manual", random_state: int = 0, since: dt.date | None = None) -> TrainResult:
    """Train ``tier`` on the outcome log as of ``as_of``, register it and apply the promotion gate.

    A drift-triggered retraining (``reason="drift"``) must learn the new relationship from the few
    outcomes logged since the drift began: it validates on the last ``drift_valid_days`` and trains
    on everything before them, without the embargo. Rows dated on or after ``since`` weigh
    ``drift_recent_weight`` times as much as older ones.
    """
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}, got {reason!r}.")
    if as_of is None:
        with engine.connect() as conn:
            as_of = conn.execute(sa.text("SELECT max(date) FROM outcomes")).scalar_one()
        if as_of is None and any_transactions(engine):
            with engine.connect() as conn:    # labels derived from transactions, up to the newest one
                as_of = conn.execute(sa.text("SELECT max(date) FROM transactions")).scalar_one()
        if as_of is None:
            raise InputDataError("cannot train: no outcomes and no transactions are loaded; load outcomes with "
                                 "`mlcore ingest outcomes PATH` or transactions with `mlcore ingest transactions "
                                 "PATH` first.")
    with Progress(f"train {tier} as of {as_of}", total=4, unit="phases") as bar:
        bar.step(0, "reading outcomes and notes", always=True)
        return _train(engine, settings, tier, as_of, reason, random_state, since, bar)


def _train(engine, settings, tier, as_of, reason, random_state, since, bar) -> TrainResult:
    H = settings.horizon_days
    # A sample is drawn from the distinct clients, so only its own outcome rows are ever read.
    sample = None
    buyers = any_transactions(engine)
    if settings.train_max_clients is not None:
        known = outcome_clients(engine, as_of)
        if buyers:
            known = pd.concat([known, transaction_clients(engine, as_of - dt.timedelta(days=H))]).drop_duplicates()
        sample = sample_clients(known, settings.train_max_clients, random_state)
    outcomes = read_outcomes(engine, as_of, clients=sample)
    notes, concepts = read_notes(engine, as_of - dt.timedelta(days=H), clients=sample)
    purchases = None
    if buyers:
        # Labels derived from what clients bought, on the dates the explicit log does not cover.
        purchases = purchase_days(read_transactions(engine, as_of, clients=sample))
        first_note = notes.groupby("client_id")["date"].min() if len(notes) else None
        derived = outcomes_from_purchase_days(purchases, LabelPolicy(horizon_days=H), as_of, known=first_note)
        outcomes = combine(outcomes, derived)
    bar.step(1, f"building the training set ({len(outcomes):,} outcomes)", always=True)
    ts = training_set(outcomes, notes, concepts, H, purchases)
    if reason == "drift":
        train, valid, windows = time_split(ts.dates, as_of, settings.drift_valid_days, 0)
    else:
        train, valid, windows = time_split(ts.dates, as_of, settings.valid_days, settings.embargo)
    _check_split(ts, train, valid, windows, as_of)
    available = len(train)
    train = thin_rows(train, ts.dates, settings.train_max_rows, since, random_state)
    if len(train) < available:
        log.info("%s: fitting on a random %d of the %d training rows (train_max_rows)", tier, len(train), available)

    weights = None
    if since is not None:
        recent = (ts.dates.iloc[train] >= pd.Timestamp(since)).to_numpy()
        weights = np.where(recent, settings.drift_recent_weight, 1.0)
    pipeline = make_pipeline_for(tier, random_state)
    # The candidates of each target are chosen inside the training rows, split like the holdout.
    set_selection_window(pipeline, settings.valid_days, settings.embargo)
    set_horizon(pipeline, settings.horizon_days)
    bar.step(2, f"fitting on {len(train):,} rows", always=True)
    started = time.perf_counter()
    pipeline.fit(ts.history.take(train), ts.y[train], model__sample_weight=weights,
                 model__dates=ts.dates.iloc[train].to_numpy())
    fit_seconds = time.perf_counter() - started
    bar.step(3, f"validating on {len(valid):,} rows, then the promotion gate", always=True)
    hold = ts.history.take(valid)
    pred = pipeline.predict(hold)
    metrics = evaluate(ts.y[valid], pred, reference=ts.y[train], n_boot=settings.n_bootstrap,
                       random_state=random_state)
    add_monitoring_reference(metrics, ts.y[valid], pred)
    if purchases is not None:
        add_customer_base_baseline(metrics, purchases, ts, train, valid, H, settings.n_bootstrap, random_state)
    for target, choice in selection_of(pipeline).items():
        metrics[target]["selection"] = choice
    log.info("%s trained on %d rows in %.1fs; holdout %s", tier, len(train), fit_seconds, headline(metrics))

    registry = Registry(engine, settings.model_store)
    champion = registry.champion(tier)
    # The gate decides before the version is registered, so the row is written with its decision and,
    # when promoted, as champion in the same transaction (a crash leaves both or neither).
    gate = promotion_gate(metrics, champion, registry, hold, ts.y[valid], settings.promotion_margin)
    model = registry.register(tier, pipeline, reason=reason, as_of=as_of, metrics=metrics, windows=windows,
                              n_train=len(train), n_valid=len(valid), fit_seconds=fit_seconds, gate=gate)
    bar.step(4)
    return TrainResult(model, gate["promote"], gate, metrics, fit_seconds, len(train), len(valid))


def add_customer_base_baseline(metrics: dict, purchases: pd.DataFrame, ts: TrainingSet, train, valid, H: int,
                               n_boot: int, random_state: int = 0) -> dict:
    """Add BG/NBD x Gamma-Gamma beside the trivial baselines: fitted on the purchase days up to the
    newest training outcome, scored on the validation rows (purchase AUC; CLV R2 and MAE)."""
    fit_until = ts.dates.iloc[train].max().date()
    samples = ts.history.samples.iloc[valid]
    try:
        expected, spend, params = baseline_for_rows(purchases, fit_until, samples, H)
    except InputDataError as exc:
        metrics["purchase"]["bgnbd_baseline"] = {"skipped": str(exc)}
        return metrics
    y = ts.y[valid]
    auc = bootstrap({"auc": CLASSIFIER_METRICS["auc"]}, y[:, 0], expected, n_boot, random_state)
    metrics["purchase"]["bgnbd_baseline"] = {**auc, "score": "expected purchase days in H", "params": params,
                                             "fitted_until": str(fit_until)}
    metrics["clv"]["bgnbd_gg_baseline"] = {**bootstrap({k: REGRESSOR_METRICS[k] for k in ("r2", "mae")}, y[:, 2],
                                                        spend, n_boot, random_state),
                                           "score": "expected purchase days x expected value per purchase"}
    return metrics


def add_monitoring_reference(metrics: dict, y: np.ndarray, pred: np.ndarray) -> dict:
    """Add what monitoring compares live scores with to each classifier's validation ``metrics``:
    the reliability table and ECE, the label-free AUC estimate, and the deciles of the scores."""
    for target, col in CLASSIFIERS.items():
        cal = calibration(y[:, col], pred[:, col])
        est = estimate_auc(pred[:, col])
        cal["estimated_auc"] = est["value"]
        cal["estimated_auc_se"] = None if est["lo"] is None else round((est["hi"] - est["lo"]) / (2 * 1.959964), 6)
        metrics[target]["calibration"] = cal
        metrics[target]["score_deciles"] = [round(float(q), 6) for q in np.quantile(pred[:, col], np.linspace(0, 1, 11))]
    return metrics


def promotion_gate(metrics: dict, champion: ModelVersion | None, registry: Registry, hold: History,
                   y_hold: np.ndarray, margin: float) -> dict:
    """Promote when no headline metric is worse than the champion's on the same holdout by > margin.

    A candidate that ranks a target backwards (its validation AUC interval wholly below 0.5, worse
    than a constant score) is never promoted, not even as the first model of its tier.
    """
    candidate = headline(metrics)
    backwards = {t: metrics[t]["auc"]["hi"] for t in CLASSIFIERS
                 if (metrics.get(t, {}).get("auc") or {}).get("hi") is not None and metrics[t]["auc"]["hi"] < 0.5}
    if backwards:
        return {"promote": False, "candidate": candidate, "margin": margin, "backwards": backwards,
                "why": "ranks %s backwards on validation (AUC upper bound below 0.5): too little history to "
                       "learn it, or labels that contradict the features" % ", ".join(sorted(backwards))}
    if champion is None:
        return {"promote": True, "why": "first model of its tier", "candidate": candidate, "margin": margin}
    champ_pred = registry.load(champion).predict(hold)
    champ = headline(evaluate(y_hold, champ_pred, n_boot=1))
    worse = {t: round(champ[t] - candidate[t], 6) for t in candidate
             if candidate[t] is not None and champ[t] is not None and candidate[t] < champ[t] - margin}
    why = ("not worse than champion v%d by more than %.3f on any target" % (champion.version, margin)
           if not worse else "worse than champion v%d on %s" % (champion.version, ", ".join(sorted(worse))))
    return {"promote": not worse, "why": why, "candidate": candidate, "champion": champ,
            "champion_version": champion.version, "margin": margin, "shortfall": worse}
