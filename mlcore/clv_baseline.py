"""The customer-base baseline: BG/NBD for how often a client buys, Gamma-Gamma for how much.

What a customer-analytics team fits by default (Fader, Hardie & Lee 2005, "Counting your customers
the easy way"; Fader & Hardie's note on the Gamma-Gamma spend model), fitted by maximum likelihood
with the ``lifetimes`` package on the recency-frequency-monetary summary of each client's
purchase days up to a calibration date. Its predictions for the next H days — expected purchases,
and expected spend = expected purchases x expected value per purchase — are the baseline the
tiers are compared with.

Example:
    >>> days = purchase_days(transactions)                        # doctest: +SKIP
    >>> model = fit_customer_base(rfm_summary(days, dt.date(1997, 9, 30)))
    >>> model.params["bgnbd"]                                    # {'r': 0.243, 'alpha': 4.414, ...}
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import warnings

import numpy as np
import pandas as pd

from mlcore.exceptions import InputDataError


def _lifetimes():
    with warnings.catch_warnings():          # lifetimes sets a pandas option that pandas 3 deprecates
        warnings.simplefilter("ignore")
        import lifetimes
    return lifetimes


def purchase_days(transactions: pd.DataFrame) -> pd.DataFrame:
    """Spend per client and purchase day: returns net against that day's purchases.

    ``transactions`` has ``client_id``, ``date`` and ``amount``. A purchase day has at least one
    line of amount >= 0 (a free item is still a purchase) and a net spend >= 0; a day of returns
    only, or of more returned than bought, is not a purchase day.
    """
    missing = {"client_id", "date", "amount"} - set(transactions.columns)
    if missing:
        raise InputDataError(f"transactions need the columns client_id, date, amount; missing {sorted(missing)}.")
    t = transactions.assign(date=pd.to_datetime(transactions["date"]).dt.normalize(),
                            bought=transactions["amount"] >= 0)
    days = t.groupby(["client_id", "date"], as_index=False, sort=True).agg(amount=("amount", "sum"),
                                                                         bought=("bought", "any"))
    return days.loc[days["bought"] & (days["amount"] >= 0), ["client_id", "date", "amount"]].reset_index(drop=True)


def rfm_summary(days: pd.DataFrame, as_of: dt.date, period_days: int = 7) -> pd.DataFrame:
    """Each client's recency-frequency-monetary summary from its purchase days on or before ``as_of``.

    Returns, indexed by client_id: ``frequency`` (repeat purchase days), ``recency`` (first to last
    purchase day) and ``T`` (first purchase day to ``as_of``), both in periods of ``period_days``,
    ``monetary_value`` (mean spend of the repeat days; 0 without any), and ``first``/``last`` days.
    The definitions are those of Fader, Hardie & Lee and of ``lifetimes``.
    """
    d = days[days["date"] <= pd.Timestamp(as_of)]
    if d.empty:
        return pd.DataFrame(columns=["frequency", "recency", "T", "monetary_value", "first", "last"],
                            index=pd.Index([], name="client_id"))
    g = d.groupby("client_id", sort=True)
    out = pd.DataFrame({"n": g.size(), "first": g["date"].min(), "last": g["date"].max(),
                        "spend": g["amount"].sum(), "first_spend": g["amount"].first()})
    out["frequency"] = out["n"] - 1
    out["recency"] = (out["last"] - out["first"]).dt.days / period_days
    out["T"] = (pd.Timestamp(as_of) - out["first"]).dt.days / period_days
    repeat = out["frequency"] > 0
    out["monetary_value"] = np.where(repeat, (out["spend"] - out["first_spend"]) / out["frequency"].clip(lower=1), 0.0)
    return out[["frequency", "recency", "T", "monetary_value", "first", "last"]]


@dataclasses.dataclass
class CustomerBaseModel:
    """A fitted BG/NBD and Gamma-Gamma pair; ``params`` holds both models' estimates."""

    bgnbd: object
    gamma_gamma: object | None
    period_days: int
    mean_value: float
    params: dict


def fit_customer_base(summary: pd.DataFrame, period_days: int = 7, penalizer: float = 0.0) -> CustomerBaseModel:
    """Fit BG/NBD on every client of ``summary`` and Gamma-Gamma on its repeat buyers."""
    if len(summary) < 10 or (summary["frequency"] > 0).sum() < 2:
        raise InputDataError(f"cannot fit the customer-base baseline: {len(summary)} clients, "
                             f"{int((summary['frequency'] > 0).sum())} with a repeat purchase (need 10 and 2).")
    lt = _lifetimes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            bgf = lt.BetaGeoFitter(penalizer_coef=penalizer).fit(summary["frequency"], summary["recency"],
                                                                  summary["T"])
        except lt.utils.ConvergenceError as exc:   # the baseline is then skipped, not the training
            raise InputDataError(f"cannot fit the customer-base baseline: BG/NBD did not converge on "
                                 f"{len(summary)} clients ({str(exc).strip().splitlines()[0]}).") from exc
        repeat = summary[summary["frequency"] > 0]
        try:
            gg = lt.GammaGammaFitter(penalizer_coef=penalizer).fit(repeat["frequency"], repeat["monetary_value"])
        except Exception:            # too few or degenerate repeat buyers: the mean value per purchase stands in
            gg = None
    mean_value = float(repeat["monetary_value"].mean())
    params = {"bgnbd": {k: round(float(v), 6) for k, v in bgf.params_.items()},
              "gamma_gamma": None if gg is None else {k: round(float(v), 6) for k, v in gg.params_.items()},
              "n_clients": int(len(summary)), "n_repeat_buyers": int(len(repeat)), "period_days": period_days}
    return CustomerBaseModel(bgf, gg, period_days, mean_value, params)


def customer_base_from_params(params: dict, mean_value: float) -> CustomerBaseModel:
    """The model :func:`fit_customer_base` returned, rebuilt from its ``params`` alone (no fitting data kept)."""
    lt = _lifetimes()
    bgf = lt.BetaGeoFitter()
    bgf.params_ = pd.Series(params["bgnbd"])
    gg = None
    if params.get("gamma_gamma"):
        gg = lt.GammaGammaFitter()
        gg.params_ = pd.Series(params["gamma_gamma"])
    return CustomerBaseModel(bgf, gg, params["period_days"], mean_value, params)


def predict_customer_base(model: CustomerBaseModel, summary: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """Per client of ``summary``: expected purchase days in the next ``horizon_days``, the probability
    of being alive, the expected value per purchase and the expected spend in the window."""
    t = horizon_days / model.period_days
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        purchases = model.bgnbd.conditional_expected_number_of_purchases_up_to_time(
            t, summary["frequency"], summary["recency"], summary["T"])
        alive = model.bgnbd.conditional_probability_alive(summary["frequency"], summary["recency"], summary["T"])
        if model.gamma_gamma is not None:
            value = model.gamma_gamma.conditional_expected_average_profit(summary["frequency"],
                                                                         summary["monetary_value"])
        else:
            value = pd.Series(model.mean_value, index=summary.index)
    out = pd.DataFrame({"expected_purchases": np.asarray(purchases, dtype=float),
                        "p_alive": np.asarray(alive, dtype=float),
                        "expected_value": np.asarray(value, dtype=float)}, index=summary.index)
    out["expected_spend"] = out["expected_purchases"] * out["expected_value"]
    return out


def baseline_for_rows(purchases: pd.DataFrame, fit_until: dt.date, samples: pd.DataFrame, horizon_days: int,
                      period_days: int = 7) -> tuple[np.ndarray, np.ndarray, dict]:
    """The baseline's predictions for rows (``client_id``, ``as_of``): expected purchase days and spend
    in the H days after each row's as_of, from the model fitted on the purchase days up to ``fit_until``.

    Each row is predicted from its own client's summary as of its as_of (nothing later); a client
    with no purchase day by then gets 0 (the model has nothing to go on). Returns the two arrays
    and the fitted model's ``params``.
    """
    model = fit_customer_base(rfm_summary(purchases, fit_until, period_days), period_days)
    purchases_out, spend_out = np.zeros(len(samples)), np.zeros(len(samples))
    as_of = pd.to_datetime(samples["as_of"]).to_numpy()
    for day in np.unique(as_of):
        rows = np.flatnonzero(as_of == day)
        summary = rfm_summary(purchases, pd.Timestamp(day).date(), period_days)
        pred = predict_customer_base(model, summary, horizon_days)
        pos = pred.index.get_indexer(samples["client_id"].to_numpy()[rows])
        hit = pos >= 0
        purchases_out[rows[hit]] = pred["expected_purchases"].to_numpy()[pos[hit]]
        spend_out[rows[hit]] = pred["expected_spend"].to_numpy()[pos[hit]]
    return purchases_out, spend_out, model.params
