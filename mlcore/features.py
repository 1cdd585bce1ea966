"""Point-in-time client histories and the scikit-learn transformers that turn them into features.

A :class:`History` holds, for each sample (a client as of a date), the notes and concept rows
dated on or before that date, with their age in days. Nothing dated after ``as_of`` can enter it:
:func:`build_history` drops such rows before anything else sees them.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.utils.validation import check_is_fitted

from mlcore.clv_baseline import customer_base_from_params, fit_customer_base, predict_customer_base
from mlcore.exceptions import InputDataError
from mlcore.params import check_param


def _no_purchases() -> pd.DataFrame:
    return pd.DataFrame({"row": np.zeros(0, np.int64), "age": np.zeros(0, np.int64), "amount": np.zeros(0)})


@dataclasses.dataclass
class History:
    """Notes, concepts and purchases of each sample as of its date.

    Attributes:
        samples: One row per sample: ``client_id``, ``as_of`` (datetime64[ns], day precision).
        notes: ``row`` (sample position), ``note`` (int code), ``age`` (days before as_of, >= 0).
        concepts: ``row``, ``note``, ``age``, ``concept_id`` (str), ``confidence`` (float).
        purchases: ``row``, ``age``, ``amount``: the sample's purchase days (see
            :func:`mlcore.clv_baseline.purchase_days`) dated on or before as_of, sorted by row and age.
    """

    samples: pd.DataFrame
    notes: pd.DataFrame
    concepts: pd.DataFrame
    purchases: pd.DataFrame = dataclasses.field(default_factory=_no_purchases)

    def __setstate__(self, state):          # histories pickled before purchases existed
        state.setdefault("purchases", _no_purchases())
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def shape(self) -> tuple[int]:
        """``(samples,)``: lets scikit-learn's model-selection tools count and split a History."""
        return (len(self.samples),)

    def __getitem__(self, key) -> "History":
        """The sub-history of the samples ``key`` selects (positions, a slice or a boolean mask)."""
        if isinstance(key, tuple):           # scikit-learn indexes arrays as X[key, ...]
            key = key[0]
        return self.take(np.arange(len(self.samples))[key])

    @functools.cached_property
    def concept_codes(self) -> tuple[np.ndarray, pd.Index]:
        """Each concept row's integer code and the concept ids they index, sorted (factorised once, shared).

        Sorted, so that per-sample sums over concepts add in the same order whatever else the history holds.
        """
        codes, names = pd.factorize(self.concepts["concept_id"], sort=True)
        return codes.astype(np.int64), pd.Index(names.astype(str))

    def concept_codes_in(self, concepts: pd.Index) -> np.ndarray:
        """Each concept row's position in ``concepts``, or -1 where it is not there."""
        codes, names = self.concept_codes
        return concepts.get_indexer(names)[codes] if len(codes) else codes

    def concept_counts(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows per (sample, concept) pair among the concept rows selected by the mask ``rows``.

        Returns each pair's sample position and its count, sorted by sample.
        """
        codes, names = self.concept_codes
        k = max(len(names), 1)
        keys = self.concepts["row"].to_numpy(np.int64) * k + codes
        pairs, counts = np.unique(keys if rows is None else keys[rows], return_counts=True)
        return pairs // k, counts

    def take(self, positions) -> "History":
        """The sub-history of the samples at ``positions`` (renumbered 0..k-1)."""
        positions = np.asarray(positions)
        remap = np.full(len(self.samples), -1, dtype=np.int64)
        remap[positions] = np.arange(len(positions))
        def sub(frame):
            new_row = remap[frame["row"].to_numpy()]
            keep = new_row >= 0
            return frame.loc[keep].assign(row=new_row[keep]).reset_index(drop=True)
        return History(self.samples.iloc[positions].reset_index(drop=True), sub(self.notes), sub(self.concepts),
                       sub(self.purchases))


def build_history(samples: pd.DataFrame, notes: pd.DataFrame, concepts: pd.DataFrame,
                  purchases: pd.DataFrame | None = None) -> History:
    """Join notes, concepts and purchase days to samples, keeping only rows dated on or before each sample's as_of.

    Args:
        samples: ``client_id``, ``as_of``.
        notes: ``note_id``, ``client_id``, ``date``.
        concepts: ``note_id``, ``concept_id``, ``confidence``.
        purchases: ``client_id``, ``date``, ``amount``: purchase days (optional).
    """
    samples = samples[["client_id", "as_of"]].reset_index(drop=True)
    samples["as_of"] = pd.to_datetime(samples["as_of"]).astype("datetime64[ns]")
    # Joins on integer codes (client position, note code), not on the id strings.
    clients = pd.Index(samples["client_id"].unique())
    note_codes, note_ids = pd.factorize(notes["note_id"])
    s = pd.DataFrame({"row": np.arange(len(samples)), "client": clients.get_indexer(samples["client_id"]),
                      "as_of": samples["as_of"].to_numpy()})
    n = pd.DataFrame({"client": clients.get_indexer(notes["client_id"]), "note": note_codes,
                      "date": pd.to_datetime(notes["date"]).astype("datetime64[ns]").to_numpy()})
    joined = s.merge(n[n["client"] >= 0], on="client", how="inner")
    age = (joined["as_of"] - joined["date"]).dt.days.to_numpy()
    kept = age >= 0
    note_rows = pd.DataFrame({"row": joined["row"].to_numpy()[kept], "note": joined["note"].to_numpy()[kept],
                              "age": age[kept]})
    c = pd.DataFrame({"note": pd.Index(note_ids).get_indexer(concepts["note_id"]),
                      "concept_id": concepts["concept_id"].to_numpy(), "confidence": concepts["confidence"].to_numpy()})
    concept_rows = note_rows.merge(c[c["note"] >= 0], on="note", how="inner")
    return History(
        samples,
        note_rows.sort_values(["row", "age"], kind="stable").reset_index(drop=True),
        concept_rows[["row", "note", "age", "concept_id", "confidence"]].reset_index(drop=True),
        _no_purchases() if purchases is None else purchase_rows(samples, purchases),
    )


def purchase_rows(samples: pd.DataFrame, purchases: pd.DataFrame) -> pd.DataFrame:
    """Each sample's purchase days (``client_id``, ``date``, ``amount``) on or before its as_of:
    ``row``, ``age``, ``amount``, sorted by row and age."""
    clients = pd.Index(samples["client_id"].unique())
    s = pd.DataFrame({"row": np.arange(len(samples)), "client": clients.get_indexer(samples["client_id"]),
                      "as_of": pd.to_datetime(samples["as_of"]).astype("datetime64[ns]").to_numpy()})
    p = pd.DataFrame({"client": clients.get_indexer(purchases["client_id"]),
                      "date": pd.to_datetime(purchases["date"]).astype("datetime64[ns]").to_numpy(),
                      "amount": purchases["amount"].to_numpy(dtype=float)})
    joined = s.merge(p[p["client"] >= 0], on="client", how="inner")
    age = (joined["as_of"] - joined["date"]).dt.days.to_numpy()
    kept = age >= 0
    out = pd.DataFrame({"row": joined["row"].to_numpy()[kept].astype(np.int64), "age": age[kept].astype(np.int64),
                        "amount": joined["amount"].to_numpy()[kept]})
    return out.sort_values(["row", "age"], kind="stable").reset_index(drop=True)


def _matrices(history: History, columns: np.ndarray, weights: list[np.ndarray], n_cols: int) -> list[sp.csr_matrix]:
    """One samples x ``n_cols`` CSR matrix per weight array: the weights of each (row, column) summed.

    Concept rows whose column is -1 are left out. The matrices share one sparsity structure, which is
    sorted out once.
    """
    keep = columns >= 0
    key = history.concepts["row"].to_numpy(np.int64)[keep] * n_cols + columns[keep]
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    cells = key[starts]
    indptr = np.r_[0, np.cumsum(np.bincount(cells // n_cols, minlength=len(history)))]
    out = []
    for w in weights:
        data = np.add.reduceat(w[keep][order], starts) if len(starts) else np.zeros(0)
        out.append(sp.csr_matrix((data, cells % n_cols, indptr), shape=(len(history), n_cols)))
    return out


class _VocabularyMixin:
    min_count = 5

    def _fit_vocabulary(self, history: History):
        check_param(type(self).__name__, "min_count", self.min_count, numbers.Integral, 1)
        counts = history.concepts["concept_id"].value_counts()
        vocab = np.sort(counts.index[counts >= self.min_count].to_numpy().astype(str))
        self.vocabulary_ = pd.Index(vocab)
        return self

    def _codes(self, history: History) -> np.ndarray:
        return history.concept_codes_in(self.vocabulary_)


class ConceptTfidf(_VocabularyMixin, TransformerMixin, BaseEstimator):
    """TF-IDF over each sample's concepts (confidence-weighted counts); the Fast tier's core."""

    def __init__(self, min_count: int = 5, sublinear_tf: bool = True):
        self.min_count = min_count
        self.sublinear_tf = sublinear_tf

    def fit(self, history: History, y=None):
        self._fit_vocabulary(history)
        # no concept seen often enough (e.g. a client base known from purchases only): no columns
        self.tfidf_ = (TfidfTransformer(sublinear_tf=self.sublinear_tf).fit(self._counts(history))
                       if len(self.vocabulary_) else None)
        return self

    def _counts(self, history):
        conf = history.concepts["confidence"].to_numpy(dtype=float)
        return _matrices(history, self._codes(history), [conf], len(self.vocabulary_))[0]

    def transform(self, history: History):
        check_is_fitted(self, "vocabulary_")
        if self.tfidf_ is None:
            return sp.csr_matrix((len(history), 0))
        return self.tfidf_.transform(self._counts(history))

    def get_feature_names_out(self, input_features=None):
        return np.array([f"tfidf__{c}" for c in self.vocabulary_], dtype=object)


class RecencyConcepts(_VocabularyMixin, TransformerMixin, BaseEstimator):
    """Per concept, confidence x 0.5 ** (age / half_life) summed over notes, for several half-lives.

    A half-life of None means no decay: log1p of the confidence-weighted count.
    """

    def __init__(self, half_lives=(30, 90, 365), min_count: int = 5):
        self.half_lives = half_lives
        self.min_count = min_count

    def fit(self, history: History, y=None):
        hls = self.half_lives if isinstance(self.half_lives, (list, tuple)) else None
        if not hls:
            raise ValueError(f"RecencyConcepts: half_lives must be a non-empty list of days (or None for no decay), "
                             f"got {self.half_lives!r}.")
        for hl in hls:
            check_param("RecencyConcepts", "each of half_lives", hl, numbers.Real, 1e-9, none_ok=True)
        return self._fit_vocabulary(history)

    def transform(self, history: History):
        check_is_fitted(self, "vocabulary_")
        codes = self._codes(history)
        conf = history.concepts["confidence"].to_numpy(dtype=float)
        age = history.concepts["age"].to_numpy(dtype=float)
        weights = [conf if hl is None else conf * np.exp2(-age / hl) for hl in self.half_lives]
        blocks = _matrices(history, codes, weights, len(self.vocabulary_))
        for hl, block in zip(self.half_lives, blocks):
            if hl is None:
                block.data = np.log1p(block.data)
        return sp.hstack(blocks, format="csr")

    def get_feature_names_out(self, input_features=None):
        return np.array([f"recency{hl or 'all'}__{c}" for hl in self.half_lives for c in self.vocabulary_], dtype=object)


class _DenseStats(TransformerMixin, BaseEstimator):
    """A stateless block of dense per-sample statistics over ``windows`` of days."""

    windows = (30, 90, 180, 365)

    def fit(self, history: History, y=None):
        self.n_features_out_ = len(self.get_feature_names_out())
        return self


class ActivityStats(_DenseStats):
    """Note frequency and recency, concept counts and confidence: dense count statistics."""

    def transform(self, history: History):
        n = len(history)
        notes, concepts = history.notes, history.concepts
        n_rows = notes["row"].to_numpy()
        age = notes["age"].to_numpy(dtype=float)
        n_notes = np.bincount(n_rows, minlength=n).astype(float)
        last = np.full(n, 3650.0)
        np.minimum.at(last, n_rows, age)
        first = np.zeros(n)
        np.maximum.at(first, n_rows, age)
        windows = [np.bincount(n_rows, weights=(age < w), minlength=n) for w in self.windows]
        c_rows = concepts["row"].to_numpy()
        n_concepts = np.bincount(c_rows, minlength=n).astype(float)
        conf = np.bincount(c_rows, weights=concepts["confidence"].to_numpy(dtype=float), minlength=n)
        n_unique = np.bincount(history.concept_counts()[0], minlength=n).astype(float)
        span = np.maximum(first - last, 1.0)
        cols = [np.log1p(n_notes), np.log1p(last), np.log1p(first), *[np.log1p(w) for w in windows],
                np.log1p(n_concepts), np.log1p(n_unique), conf / np.maximum(n_concepts, 1),
                n_concepts / np.maximum(n_notes, 1), np.log1p(n_notes / span * 365.0)]
        return np.column_stack(cols)

    def get_feature_names_out(self, input_features=None):
        return np.array(["log_notes", "log_days_since_last", "log_days_since_first",
                         *[f"log_notes_{w}d" for w in self.windows], "log_concept_rows", "log_unique_concepts",
                         "mean_confidence", "concepts_per_note", "log_notes_per_year"], dtype=object)


def _purchase_stats(history: History) -> dict:
    """Per sample: its purchase days' ``count``, youngest age ``last`` (inf without any), oldest age
    ``first`` (-1 without any) and ``total`` spend; ``rows``, ``age``, ``spend`` per purchase day."""
    n = len(history)
    p = history.purchases
    rows = p["row"].to_numpy(np.int64)
    age = p["age"].to_numpy(dtype=float)
    spend = p["amount"].to_numpy(dtype=float)
    last = np.full(n, np.inf)
    np.minimum.at(last, rows, age)
    first = np.full(n, -1.0)
    np.maximum.at(first, rows, age)
    return {"rows": rows, "age": age, "spend": spend, "count": np.bincount(rows, minlength=n), "last": last,
            "first": first, "total": np.bincount(rows, weights=spend, minlength=n)}


class PurchaseHistory(_DenseStats):
    """Recency, frequency and monetary value of the sample's purchase days, tenure and regularity: dense.

    All zero (and ``has_purchases`` 0) for a sample without purchases as of its date.
    """

    def transform(self, history: History):
        n = len(history)
        stats = _purchase_stats(history)
        rows, age, spend, total = stats["rows"], stats["age"], stats["spend"], stats["total"]
        count = stats["count"].astype(float)
        has = count > 0
        last = np.minimum(stats["last"], 3650.0)
        first = np.maximum(stats["first"], 0.0)
        in_window = [(age < w) for w in self.windows]
        counts = [np.bincount(rows, weights=m, minlength=n) for m in in_window]
        spends = [np.bincount(rows, weights=spend * m, minlength=n) for m in in_window]
        # gaps between consecutive purchase days of a sample (rows are sorted by row, then age)
        same = np.r_[False, rows[1:] == rows[:-1]] if len(rows) else np.zeros(0, bool)
        gap = np.where(same, age - np.r_[0.0, age[:-1]], 0.0)
        n_gaps = np.bincount(rows, weights=same, minlength=n)
        mean_gap = np.bincount(rows, weights=gap, minlength=n) / np.maximum(n_gaps, 1)
        var_gap = np.bincount(rows, weights=gap ** 2, minlength=n) / np.maximum(n_gaps, 1) - mean_gap ** 2
        regularity = np.where(n_gaps >= 2, np.sqrt(np.maximum(var_gap, 0)) / np.maximum(mean_gap, 1), 0.0)
        tenure = np.where(has, first, 0.0)
        cols = [has.astype(float), np.log1p(np.where(has, last, 3650.0)), np.log1p(tenure), np.log1p(count),
                *[np.log1p(c) for c in counts], np.log1p(total), *[np.log1p(v) for v in spends],
                np.log1p(total / np.maximum(count, 1)), np.log1p(mean_gap), regularity,
                np.log1p(count / np.maximum(tenure, 30.0) * 365.0)]
        return np.column_stack(cols)

    def get_feature_names_out(self, input_features=None):
        return np.array(["has_purchases", "log_days_since_purchase", "log_purchase_tenure", "log_purchase_days",
                         *[f"log_purchase_days_{w}d" for w in self.windows], "log_spend",
                         *[f"log_spend_{w}d" for w in self.windows], "log_spend_per_day", "log_mean_gap_days",
                         "gap_variation", "log_purchase_days_per_year"], dtype=object)


def purchase_summary(history: History, period_days: int = 7) -> pd.DataFrame:
    """Each sample's recency-frequency-monetary summary as of its date, in the terms of
    :func:`mlcore.clv_baseline.rfm_summary` (``frequency``, ``recency``, ``T``, ``monetary_value``);
    ``has`` is False (and the rest 0) for a sample without purchase days."""
    n = len(history)
    stats = _purchase_stats(history)
    rows, spend, count, last, first = stats["rows"], stats["spend"], stats["count"], stats["last"], stats["first"]
    first_spend = np.zeros(n)
    oldest = np.r_[rows[1:] != rows[:-1], True] if len(rows) else np.zeros(0, bool)   # sorted by row, then age
    first_spend[rows[oldest]] = spend[oldest]
    has = count > 0
    frequency = np.maximum(count - 1, 0).astype(float)
    total = stats["total"]
    return pd.DataFrame({
        "has": has, "frequency": frequency,
        "recency": np.where(has, first - np.where(has, last, 0.0), 0.0) / period_days,
        "T": np.where(has, first, 0.0) / period_days,
        "monetary_value": np.where(frequency > 0, (total - first_spend) / np.maximum(frequency, 1), 0.0)})


class CustomerBase(TransformerMixin, BaseEstimator):
    """BG/NBD and Gamma-Gamma predictions from each sample's purchase days: dense.

    Fitted on the training samples' recency-frequency-monetary summaries, each as of its own date
    (at most ``max_fit_rows`` of them, drawn at random), the customer-base model of
    :mod:`mlcore.clv_baseline` gives every sample its expected purchase days in the next
    ``horizon_days``, its probability of being alive, its expected value per purchase and its
    expected spend: what that model extrapolates to clients older than any the tier learnt from.
    Zero for a sample without purchases; all zero when too few samples have a repeat purchase to fit on.
    """

    def __init__(self, horizon_days: int = 90, period_days: int = 7, max_fit_rows: int = 50_000,
                 random_state: int = 0):
        self.horizon_days = horizon_days
        self.period_days = period_days
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    def fit(self, history: History, y=None):
        for name, low in (("horizon_days", 1), ("period_days", 1), ("max_fit_rows", 10)):
            check_param(type(self).__name__, name, getattr(self, name), numbers.Integral, low)
        summary = purchase_summary(history, self.period_days)
        summary = summary[summary["has"] & (summary["T"] > 0)]
        if len(summary) > self.max_fit_rows:
            summary = summary.sample(self.max_fit_rows, random_state=self.random_state)
        self.params_, self.mean_value_ = None, 0.0
        try:
            model = fit_customer_base(summary, self.period_days)
        except (InputDataError, ValueError, ArithmeticError, np.linalg.LinAlgError):
            return self                     # nothing to fit on: the block stays zero
        self.params_, self.mean_value_ = model.params, model.mean_value
        return self

    def transform(self, history: History):
        check_is_fitted(self, "mean_value_")
        out = np.zeros((len(history), 5))
        summary = purchase_summary(history, self.period_days)
        has = summary["has"].to_numpy()
        if self.params_ is None or not has.any():
            return out
        model = customer_base_from_params(self.params_, self.mean_value_)
        pred = predict_customer_base(model, summary[has], self.horizon_days)
        values = pred[["expected_purchases", "p_alive", "expected_value", "expected_spend"]].to_numpy(float)
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        out[has] = np.column_stack([np.ones(has.sum()), np.log1p(np.maximum(values[:, 0], 0)), values[:, 1],
                                    np.log1p(np.maximum(values[:, 2], 0)), np.log1p(np.maximum(values[:, 3], 0))])
        return out

    def get_feature_names_out(self, input_features=None):
        return np.array(["cb_fitted", "cb_log_expected_purchases", "cb_p_alive", "cb_log_expected_value",
                         "cb_log_expected_spend"], dtype=object)


class ConceptDiversity(TransformerMixin, BaseEstimator):
    """Entropy and concentration of each sample's concept mix (overall and over the last 180 days)."""

    def fit(self, history: History, y=None):
        self.n_features_out_ = 4
        return self

    def transform(self, history: History):
        n = len(history)
        out = []
        recent = history.concepts["age"].to_numpy() < 180
        for rows, counts in (history.concept_counts(), history.concept_counts(recent)):
            p = counts / np.bincount(rows, weights=counts, minlength=n)[rows]
            entropy = np.bincount(rows, weights=-p * np.log(p), minlength=n)
            top = np.zeros(n)
            np.maximum.at(top, rows, p)
            out += [entropy, top]
        return np.column_stack(out)

    def get_feature_names_out(self, input_features=None):
        return np.array(["concept_entropy", "top_concept_share", "concept_entropy_180d",
                         "top_concept_share_180d"], dtype=object)


class CoOccurrence(TransformerMixin, BaseEstimator):
    """Recency-weighted counts of the concept pairs that most often appear in the same note.

    Pairs are built on integer concept codes, and only from the concepts of the kept pairs at
    transform time, so the self-join of each note's concepts stays small.
    """

    def __init__(self, n_pairs: int = 150, half_life: float = 120.0):
        self.n_pairs = n_pairs
        self.half_life = half_life

    @staticmethod
    def _pairs(history: History, concepts: pd.Index) -> pd.DataFrame:
        """Within-note pairs (a < b) of the concepts in ``concepts``: row, age, code a * K + b, weight."""
        c = history.concepts
        code = history.concept_codes_in(concepts)
        keep = np.flatnonzero(code >= 0)
        # Group the kept rows by (sample, note); pair every row with every row of its group.
        notes = c["note"].to_numpy(np.int64)
        note = c["row"].to_numpy(np.int64)[keep] * (notes.max(initial=0) + 1) + notes[keep]
        order = np.argsort(note, kind="stable")
        rows, note = keep[order], note[order]
        starts = np.flatnonzero(np.r_[True, note[1:] != note[:-1]]) if len(note) else np.zeros(0, dtype=np.int64)
        size = np.diff(np.r_[starts, len(note)])
        per_row = np.repeat(size, size)                       # each row's group size
        first = np.repeat(starts, size)                       # each row's group start
        a = np.repeat(np.arange(len(note)), per_row)
        b = np.repeat(first, per_row) + np.arange(len(a)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        a, b = rows[a], rows[b]
        upper = code[a] < code[b]
        a, b = a[upper], b[upper]
        conf = c["confidence"].to_numpy(dtype=float)
        return pd.DataFrame({"row": c["row"].to_numpy()[a], "age": c["age"].to_numpy()[a],
                             "pair": code[a].astype(np.int64) * len(concepts) + code[b], "w": conf[a] * conf[b]})

    def fit(self, history: History, y=None):
        check_param("CoOccurrence", "n_pairs", self.n_pairs, numbers.Integral, 1)
        check_param("CoOccurrence", "half_life", self.half_life, numbers.Real, 1e-9)
        concepts = pd.Index(np.sort(history.concepts["concept_id"].unique().astype(str)))
        pairs = self._pairs(history, concepts)
        top = pairs.groupby("pair")["row"].nunique().nlargest(self.n_pairs).index.to_numpy()
        names = [f"{concepts[c // len(concepts)]}|{concepts[c % len(concepts)]}" for c in top]
        self.pairs_ = pd.Index(np.sort(np.asarray(names, dtype=str)))
        for attr in ("concepts_", "pair_codes_"):
            self.__dict__.pop(attr, None)
        self._codes()
        return self

    def _codes(self):
        """The concepts of the kept pairs, and each pair's code in that index, in column order."""
        if not hasattr(self, "pair_codes_"):   # artifacts pickled before the codes existed
            split = [p.split("|", 1) for p in self.pairs_]
            self.concepts_ = pd.Index(np.sort(np.unique([x for pair in split for x in pair]).astype(str)))
            self.pair_codes_ = np.array([self.concepts_.get_loc(a) * len(self.concepts_) + self.concepts_.get_loc(b)
                                         for a, b in split], dtype=np.int64)
        return self.concepts_, self.pair_codes_

    def transform(self, history: History):
        check_is_fitted(self, "pairs_")
        concepts, codes = self._codes()
        pairs = self._pairs(history, concepts)
        cols = pd.Index(codes).get_indexer(pairs["pair"].to_numpy())
        keep = cols >= 0
        w = pairs["w"].to_numpy() * np.exp2(-pairs["age"].to_numpy() / self.half_life)
        m = sp.csr_matrix((w[keep], (pairs["row"].to_numpy()[keep], cols[keep])),
                          shape=(len(history), len(self.pairs_)))
        m.sum_duplicates()
        return m

    def get_feature_names_out(self, input_features=None):
        return np.array([f"pair__{p}" for p in self.pairs_], dtype=object)
