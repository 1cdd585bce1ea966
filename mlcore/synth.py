"""A synthetic clienteling world with known truth.

Clients have hidden traits (wealth, engagement, loyalty, gifting, taste) that shape how often
advisors write about them and which concepts the notes show. Outcomes logged on day d depend only
on what the notes show as of d - H (recency-weighted concept evidence, note recency and frequency,
an occasion x intent interaction), so ``truth.csv`` holds the best achievable prediction for every
outcome row: the ceiling any model of the notes can reach. ``drift_day`` changes the relationship
between concepts and outcomes from that day on, and shifts the concept mix of later notes.

With ``purchases`` the world writes what clients bought (``transactions.csv``) instead of an
outcome log, and the outcomes are those the label policy derives from it (:mod:`mlcore.labels`).
Purchases are a Poisson process whose rate is constant on 30-day blocks and set, for the block
starting on day b, by the notes and the client's own purchase days as of b - H; so every rate of
an outcome window (d - H, d] is known at d - H and the truth on the policy's grid is exact.

Example:
    >>> from mlcore.synth import WorldSpec, write_world
    >>> write_world(WorldSpec(n_clients=1000, days=730, seed=7), "data/world")  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mlcore.exceptions import ConfigError
from mlcore.labels import LabelPolicy, outcome_dates
from mlcore.progress import Progress
from mlcore.taxonomy import LANGUAGES, taxonomy

N_TRAITS = 8  # wealth, engagement, loyalty, gifting, 4 taste dimensions
_WEALTH, _ENGAGE, _LOYAL, _GIFT = 0, 1, 2, 3
_TAU_DAYS = 60.0          # decay of concept evidence in the true outcome model
_NOISE_SHARE = 0.08       # share of concept rows that are extractor false positives
_LABEL_FLIP = 0.03        # label noise on both binary outcomes
_SPEND_SIGMA = 0.6        # log-normal noise of spend around its expectation
_BLOCK_DAYS = 30          # purchase worlds: the purchase rate is constant on blocks of this many days
_PURCHASE_TARGET = 0.35   # share of known clients expected to buy in H days (calibrated per block)
_RATE_FLOOR, _RATE_TOP = 0.05, 3.0   # expected purchases in H days of a known client: floor + top x sigmoid
_ACQUIRE = 0.12           # expected purchases in H days of a client nothing is known about yet
STORES = ("paris-saint-honore", "london-bond-street", "new-york-fifth-avenue", "tokyo-ginza", "dubai-mall",
          "milan-montenapoleone", "hong-kong-landmark", "online")
#: Purchase categories and a typical amount of one line (EUR): a line's category follows its amount.
CATEGORIES = (("fragrance_beauty", 250.0), ("accessories", 650.0), ("shoes", 950.0), ("ready_to_wear", 2200.0),
              ("leather_goods", 3200.0), ("watches", 9000.0), ("jewelry", 7000.0))
# taste dimensions x categories: which tastes lean to which category
_CATEGORY_TASTES = np.array([[0.6, 0.0, -0.3, 0.4, 0.0, 0.0, 0.5],
                             [0.0, 0.5, 0.4, 0.0, -0.3, 0.6, 0.0],
                             [-0.3, 0.0, 0.0, 0.6, 0.5, 0.0, 0.0],
                             [0.0, 0.4, 0.0, -0.3, 0.0, 0.4, 0.6]])


@dataclasses.dataclass(frozen=True)
class Structure:
    """How outcomes depend on the notes in one kind of world (see :data:`KINDS`)."""

    tau_days: float = _TAU_DAYS        # decay of concept evidence (inf: none)
    recency: float = 1.0               # weight of note recency and of the recent-note count
    evidence: float = 1.5              # weight of the linear concept evidence (purchase, churn)
    thresholds: bool = False           # evidence counts only past thresholds (steps, not lines)
    interaction: float = 0.9           # occasion x intent
    wealth_interaction: float = 0.0    # lifestyle x occasion (purchase) and x recency (value)
    value_apart: bool = False          # value driven by its own concepts and by activity
    spend_sigma: float = _SPEND_SIGMA  # log-normal noise of spend (heavy tails when large)
    spend_cap: float = 2.5             # upper clip of the log spend score
    notes_scale: float = 1.0           # x notes_per_client
    concepts_scale: float = 1.0        # x concepts_per_note


#: Structurally different world types: each changes what drives the outcomes, not only the noise.
KINDS = {
    "baseline": Structure(),
    "interactions": Structure(evidence=0.7, interaction=2.0, wealth_interaction=1.5),
    "thresholds": Structure(thresholds=True, interaction=0.0),
    "value_apart": Structure(value_apart=True, spend_sigma=1.1, spend_cap=3.5),
    "sparse": Structure(notes_scale=0.4, concepts_scale=0.5),
    "dense": Structure(notes_scale=3.0, concepts_scale=1.8),
    "strong_recency": Structure(tau_days=20.0, recency=2.5),
    "no_recency": Structure(tau_days=float("inf"), recency=0.0),
}


@dataclasses.dataclass(frozen=True)
class WorldSpec:
    """Parameters of a synthetic world.

    Attributes:
        n_clients: Number of clients.
        days: Length of the simulated period in days.
        seed: Seed of every random draw.
        drift_day: Day (0-based) from which the concept/outcome relationship and the concept mix change.
        horizon_days: Prediction horizon H.
        start: Calendar date of day 0.
        notes_per_client: Mean number of notes per client over the whole period.
        concepts_per_note: Mean number of concepts per note.
        drift_flip_share: Share of concepts whose effect on outcomes reverses at the drift day (0: the
            relationship holds and only what the notes show changes).
        drift_concepts_per_note: Mean number of concepts per note from the drift day on (e.g. an
            extractor that finds less); None keeps ``concepts_per_note``.
        outcome_gap_days: Range of days between two logged outcomes of a client.
        chunk_clients: Clients generated per chunk (bounds memory).
        kind: The world type, a key of :data:`KINDS` (``baseline``: the project's own world).
        purchases: Write the clients' transactions instead of an outcome log: outcomes are then
            derived from them by the label policy (:mod:`mlcore.labels`), and the truth is on its grid.
    """

    n_clients: int = 10_000
    days: int = 730
    seed: int = 0
    drift_day: int | None = None
    horizon_days: int = 90
    start: dt.date = dt.date(2024, 1, 1)
    notes_per_client: float = 3.5
    concepts_per_note: float = 3.0
    drift_flip_share: float = 0.4
    drift_concepts_per_note: float | None = None
    outcome_gap_days: tuple[int, int] = (60, 240)
    chunk_clients: int = 50_000
    kind: str = "baseline"
    purchases: bool = False

    @property
    def structure(self) -> Structure:
        return KINDS[self.kind]

    @property
    def end(self) -> dt.date:
        """The last simulated day."""
        return self.start + dt.timedelta(days=self.days - 1)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}.")
        if self.n_clients <= 0 or self.days <= 0:
            raise ConfigError(f"n_clients and days must be positive, got {self.n_clients} and {self.days}.")
        if self.days <= self.horizon_days:
            raise ConfigError(f"days ({self.days}) must exceed horizon_days ({self.horizon_days}).")
        if not 0 < self.outcome_gap_days[0] <= self.outcome_gap_days[1]:
            raise ConfigError(f"outcome_gap_days must be (low, high) with 0 < low <= high, got {self.outcome_gap_days}.")
        if not 0 <= self.drift_flip_share <= 1:
            raise ConfigError(f"drift_flip_share must be in [0, 1], got {self.drift_flip_share}.")
        if self.drift_concepts_per_note is not None and self.drift_concepts_per_note < 1:
            raise ConfigError(f"drift_concepts_per_note must be at least 1, got {self.drift_concepts_per_note}.")
        if self.drift_day is not None and not 0 < self.drift_day < self.days:
            raise ConfigError(f"drift_day must be between 1 and days - 1 ({self.days - 1}), got {self.drift_day}.")


@dataclasses.dataclass
class _Params:
    """World-level parameters drawn once from the seed (regime 0 = before drift, 1 = after)."""

    loadings: np.ndarray          # concepts x traits
    base: np.ndarray              # regimes x concepts: popularity logits
    w_purchase: np.ndarray        # regimes x concepts
    w_churn: np.ndarray
    w_spend: np.ndarray
    gift_mask: np.ndarray         # concepts: gift occasions
    intent_mask: np.ndarray       # concepts: intents
    lifestyle_mask: np.ndarray    # concepts: lifestyle
    alpha: dict                   # intercepts per (target, regime), calibrated on the first chunk


def _draw_params(rng: np.random.Generator, tax: pd.DataFrame, flip_share: float,
                 structure: Structure = Structure()) -> _Params:
    n = len(tax)
    bucket = tax["bucket"].to_numpy()
    cid = tax["concept_id"].to_numpy().astype(str)
    loadings = rng.normal(0, 0.35, (n, N_TRAITS))
    loadings[:, 4:] += rng.normal(0, 0.9, (n, 4)) * np.isin(bucket, ["preferences", "intent"])[:, None]
    loadings[:, _ENGAGE] += 0.6 * np.isin(bucket, ["intent", "next_action"])
    loadings[:, _LOYAL] -= 0.9 * (bucket == "constraints")
    loadings[:, _WEALTH] += rng.uniform(0.3, 1.2, n) * (bucket == "lifestyle")
    luxury = np.char.find(cid, "high_jewelry") >= 0
    luxury |= np.char.find(cid, "diamonds") >= 0
    luxury |= np.char.find(cid, "platinum") >= 0
    luxury |= np.char.find(cid, "exotic") >= 0
    loadings[:, _WEALTH] += 1.0 * luxury
    loadings[:, _GIFT] += 1.0 * (bucket == "occasion")
    base = rng.normal(-0.5, 0.9, n)

    def sparse_weights(scale_by_bucket, density):
        w = np.zeros(n)
        for b, (mean, sd) in scale_by_bucket.items():
            m = bucket == b
            w[m] = rng.normal(mean, sd, m.sum())
        keep = rng.random(n) < density
        keep |= np.isin(bucket, [b for b, (mean, _) in scale_by_bucket.items() if abs(mean) >= 0.3])
        return w * keep

    w_p = sparse_weights({"intent": (0.55, 0.25), "next_action": (0.25, 0.2), "occasion": (0.15, 0.2),
                          "constraints": (-0.4, 0.2), "preferences": (0.0, 0.25), "lifestyle": (0.0, 0.2),
                          "other": (0.0, 0.3)}, density=0.35)
    w_c = sparse_weights({"constraints": (0.6, 0.25), "intent": (-0.3, 0.15), "next_action": (-0.15, 0.15),
                          "other": (0.0, 0.35), "preferences": (0.0, 0.15), "lifestyle": (0.0, 0.15),
                          "occasion": (0.0, 0.15)}, density=0.3)
    w_s = sparse_weights({"lifestyle": (0.35, 0.25), "preferences": (0.05, 0.2), "intent": (0.1, 0.15),
                          "occasion": (0.1, 0.1), "constraints": (-0.2, 0.1), "next_action": (0.0, 0.1),
                          "other": (0.0, 0.1)}, density=0.4)
    w_s = w_s + 0.5 * luxury
    if structure.value_apart:
        # value has its own drivers: tastes and the catch-all bucket, not lifestyle or luxury words
        # (drawn from a separate stream, so the other weights stay those of the baseline world)
        own = np.random.default_rng(rng.integers(2**32))
        w_s = np.where(np.isin(bucket, ["preferences", "other"]), own.normal(0.0, 0.45, n), 0.0)
        w_s *= own.random(n) < 0.5

    changed = rng.random(n) < flip_share

    def drifted(w):
        # a random share of the concepts reverse their effect (e.g. an intent that now precedes a
        # purchase elsewhere); the others keep theirs, so the world stays as predictable as before
        return np.where(changed, -w, w)

    return _Params(
        loadings=loadings,
        base=np.stack([base, base + rng.normal(0, 0.8, n)]),
        w_purchase=np.stack([w_p, drifted(w_p)]),
        w_churn=np.stack([w_c, drifted(w_c)]),
        w_spend=np.stack([w_s, drifted(w_s)]),
        gift_mask=np.char.startswith(cid, "gift_"),
        intent_mask=bucket == "intent",
        lifestyle_mask=bucket == "lifestyle",
        alpha={},
    )


def _sample_rows(cdf_flat: np.ndarray, rows: np.ndarray, n_cols: int, rng) -> np.ndarray:
    """Draw one column per entry of ``rows`` from the per-row categorical whose CDFs are stacked in cdf_flat."""
    u = rng.random(len(rows)) * (1 - 1e-9)
    pos = np.searchsorted(cdf_flat, rows + u, side="right")
    return np.minimum(pos - rows * n_cols, n_cols - 1)


def _generate_chunk(spec: WorldSpec, params: _Params, tax: pd.DataFrame, first: int, n: int,
                    first_note: int, rng: np.random.Generator, first_tx: int = 0):
    C = len(tax)
    z = rng.normal(size=(n, N_TRAITS))
    # --- notes: Poisson process per client, thinned after a client lapses (low loyalty lapses more)
    engagement = np.exp(0.6 * z[:, _ENGAGE] - 0.18)
    lapses = rng.random(n) < 1 / (1 + np.exp(1.2 + 1.2 * z[:, _LOYAL]))
    lapse_day = np.where(lapses, rng.uniform(0, spec.days, n), np.inf)
    counts = rng.poisson(spec.notes_per_client * spec.structure.notes_scale * engagement * 1.25)
    note_client = np.repeat(np.arange(n), counts)
    note_day = rng.integers(0, spec.days, len(note_client))
    keep = (note_day < lapse_day[note_client]) | (rng.random(len(note_client)) < 0.15)
    note_client, note_day = note_client[keep], note_day[keep]
    order = np.lexsort((note_day, note_client))
    note_client, note_day = note_client[order], note_day[order]
    n_notes = len(note_client)
    regime_of_note = (note_day >= spec.drift_day).astype(int) if spec.drift_day else np.zeros(n_notes, int)

    lang_p = np.array([0.4, 0.15, 0.1, 0.08, 0.07, 0.1, 0.1])
    client_lang = rng.choice(len(LANGUAGES), n, p=lang_p)
    note_lang = np.where(rng.random(n_notes) < 0.9, client_lang[note_client], 0)

    # --- concepts: client-specific categorical over the taxonomy, per regime
    k = 1 + rng.poisson(max(spec.concepts_per_note * spec.structure.concepts_scale - 1, 0.05), n_notes)
    if spec.drift_day and spec.drift_concepts_per_note is not None:
        # its own stream, so a world without this option draws exactly what it always drew
        post = regime_of_note == 1
        k[post] = 1 + np.random.default_rng([spec.seed, first, 1]).poisson(spec.drift_concepts_per_note - 1, post.sum())
    slot_note = np.repeat(np.arange(n_notes), k)
    slot_client = note_client[slot_note]
    slot_regime = regime_of_note[slot_note]
    concept = np.empty(len(slot_note), dtype=np.int64)
    affinity = z @ params.loadings.T
    for r in np.unique(slot_regime):
        logits = affinity + params.base[r]
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        cdf = np.cumsum(prob, axis=1)
        cdf[:, -1] = 1.0
        cdf_flat = (cdf + np.arange(n)[:, None]).ravel()
        m = slot_regime == r
        concept[m] = _sample_rows(cdf_flat, slot_client[m], C, rng)
    noise = rng.random(len(slot_note)) < _NOISE_SHARE
    concept[noise] = rng.integers(0, C, noise.sum())
    method = rng.choice(3, len(slot_note), p=[0.5, 0.3, 0.2])  # rule, ml, llm
    method[noise] = rng.choice([1, 2], noise.sum())
    confidence = np.where(method == 0, 1.0, np.where(method == 1, rng.beta(8, 2, len(method)),
                                                      rng.beta(9, 1.5, len(method))))
    confidence[noise] = rng.uniform(0.3, 0.75, noise.sum())
    # one row per (note, concept)
    frame = pd.DataFrame({"note": slot_note, "concept": concept, "noise": noise})
    dedup = ~frame.duplicated(["note", "concept"]).to_numpy()
    slot_note, concept, noise = slot_note[dedup], concept[dedup], noise[dedup]
    method, confidence, slot_client = method[dedup], confidence[dedup], slot_client[dedup]

    # --- outcome observation dates: logged continuously, one every 2 to 8 months per client
    obs_client, obs_day = [], []
    lo_gap, hi_gap = spec.outcome_gap_days
    day = rng.uniform(spec.horizon_days, spec.horizon_days + (lo_gap + hi_gap) / 2, n)
    while True:
        live = day < spec.days
        if not live.any():
            break
        obs_client.append(np.nonzero(live)[0])
        obs_day.append(day[live].astype(int))
        day = day + rng.uniform(lo_gap, hi_gap, n)
    obs_client = np.concatenate(obs_client)
    obs_day = np.concatenate(obs_day)
    order = np.lexsort((obs_day, obs_client))
    obs_client, obs_day = obs_client[order], obs_day[order]
    obs_regime = (obs_day >= spec.drift_day).astype(int) if spec.drift_day else np.zeros(len(obs_day), int)

    truth = _true_outcomes(spec, params, obs_client, obs_day, obs_regime, note_client, note_day,
                           slot_client, note_day[slot_note], concept, noise, C)
    labels = _draw_labels(truth, rng, spec.structure.spend_sigma)

    ids = _client_ids(first, n)
    start = np.datetime64(spec.start)
    note_ids = "N" + pd.Series(np.arange(first_note, first_note + n_notes), dtype="int64").astype(str).str.zfill(9)
    note_ids = note_ids.to_numpy()
    notes = pd.DataFrame({
        "note_id": note_ids,
        "client_id": ids[note_client],
        "date": start + note_day.astype("timedelta64[D]"),
        "language": np.asarray(LANGUAGES)[note_lang],
    })
    alias_table = tax[[f"alias_{lang}" for lang in LANGUAGES]].to_numpy()
    slot_lang = note_lang[slot_note]
    alias = alias_table[concept, slot_lang]
    span_start = rng.integers(0, 400, len(concept))
    concepts = pd.DataFrame({
        "note_id": note_ids[slot_note],
        "client_id": ids[slot_client],
        "concept_id": tax["concept_id"].to_numpy()[concept],
        "matched_alias": alias,
        "evidence_span_start": span_start,
        "evidence_span_end": span_start + pd.Series(alias).str.len().to_numpy(),
        "detection_method": np.array(["rule", "ml", "llm"])[method],
        "confidence": np.round(confidence, 4),
    })
    if spec.purchases:
        # its own stream: the notes and concepts stay those of the same world without purchases
        tx_rng = np.random.default_rng([spec.seed, first, 2])
        note_rows = (note_client, note_day, slot_client, note_day[slot_note], concept, noise, C)
        process = _purchase_process(spec, params, n, note_rows, tx_rng)
        truth = _purchase_truth(spec, process, n)
        transactions = _transaction_lines(spec, z, process, first_tx, ids, tx_rng)
        truth_frame = pd.DataFrame({
            "client_id": ids[truth["client"]],
            "date": start + truth["day"].astype("timedelta64[D]"),
            "p_purchase": truth["p_purchase"],
            "p_churn": truth["p_churn"],
            "expected_clv": truth["expected_clv"],
            "regime": (truth["day"] >= spec.drift_day).astype(int) if spec.drift_day else 0,
            "has_notes": truth["has_notes"],
            "known": True,
        })
        return notes, concepts, transactions, truth_frame
    obs_dates = start + obs_day.astype("timedelta64[D]")
    outcomes = pd.DataFrame({
        "client_id": ids[obs_client],
        "purchased": labels["purchased"],
        "churned": labels["churned"],
        "lifetime_value": np.round(labels["lifetime_value"], 2),
        "date": obs_dates,
    })
    truth_frame = pd.DataFrame({
        "client_id": ids[obs_client],
        "date": obs_dates,
        "p_purchase": truth["p_purchase"],
        "p_churn": truth["p_churn"],
        "expected_clv": truth["expected_clv"],
        "regime": obs_regime,
        "has_notes": truth["has_notes"],
    })
    return notes, concepts, outcomes, truth_frame


def _client_ids(first: int, n: int) -> np.ndarray:
    return ("C" + pd.Series(np.arange(first, first + n)).astype(str).str.zfill(7)).to_numpy()


def _note_scores(spec, params, obs_client, obs_day, obs_regime, note_client, note_day,
                 slot_client, slot_day, concept, noise, C):
    """Purchase, churn and spend scores (``s_p``, ``s_c``, ``s_v``, before any intercept) of each
    observation from the notes as of (day - H), and whether there were any (``has_notes``)."""
    n_obs = len(obs_client)
    as_of = obs_day - spec.horizon_days
    # Pair each observation with the client's real (non-noise) concept rows dated on or before as_of.
    real = ~noise
    ev = _pair(obs_client, as_of, slot_client[real], slot_day[real])
    obs_idx, row_idx, age = ev
    st = spec.structure
    decay = np.exp(-age / st.tau_days)
    evidence = sp.csr_matrix((decay, (obs_idx, concept[real][row_idx])), shape=(n_obs, C))
    evidence.sum_duplicates()
    evidence.data = np.minimum(evidence.data, 2.0)
    ever = evidence.copy()
    ever.data = np.ones_like(ever.data)

    n_idx, _, n_age = _pair(obs_client, as_of, note_client, note_day)
    n_total = np.bincount(n_idx, minlength=n_obs)
    n_recent = np.bincount(n_idx, weights=(n_age < 180), minlength=n_obs)
    last_age = np.full(n_obs, np.inf)
    np.minimum.at(last_age, n_idx, n_age)
    recency = np.where(n_total > 0, np.minimum(last_age / 180.0, 3.0), 1.0)  # unknown, not lapsed
    has_notes = n_total > 0
    # how many notes count: the recent ones where recency matters, all of them where it does not
    frequency = np.log1p(n_recent) if st.recency > 0 else np.log1p(n_total)

    gift = np.asarray(evidence[:, params.gift_mask].sum(axis=1)).ravel()
    intent = np.asarray(evidence[:, params.intent_mask].sum(axis=1)).ravel()
    lifestyle = np.asarray(evidence[:, params.lifestyle_mask].sum(axis=1)).ravel()
    interaction = (gift > 0.3) & (intent > 0.3)
    wealthy_occasion = (lifestyle > 0.5) & (gift > 0.2)

    s_p = np.empty(n_obs)
    s_c = np.empty(n_obs)
    s_v = np.empty(n_obs)
    for r in (0, 1):
        m = obs_regime == r
        if not m.any():
            continue
        if st.thresholds:
            strong = evidence[m].copy()
            strong.data = (strong.data > 0.5).astype(float)
            e_p, e_c = strong @ params.w_purchase[r], strong @ params.w_churn[r]
            s_p[m] = 1.4 * (e_p > 0.6) - 1.4 * (e_p < -0.6) + 0.9 * (n_recent[m] >= 2) - 1.0 * (recency[m] > 1.5)
            s_c[m] = 1.6 * (e_c > 0.6) - 1.2 * (e_c < -0.6) + 1.5 * (recency[m] > 1.0) - 0.7 * (n_total[m] >= 3)
        else:
            s_p[m] = st.evidence * (evidence[m] @ params.w_purchase[r]) + 0.8 * st.recency * frequency[m] \
                - 0.6 * st.recency * recency[m] + st.interaction * interaction[m]
            s_c[m] = st.evidence * (evidence[m] @ params.w_churn[r]) + 1.2 * st.recency * recency[m] \
                - 0.5 * np.log1p(n_total[m])
        if st.wealth_interaction:
            s_p[m] += st.wealth_interaction * wealthy_occasion[m]
        if st.value_apart:
            # value follows activity and its own concepts, and wealthy clients spend more when recent
            s_v[m] = ever[m] @ params.w_spend[r] + 0.45 * np.log1p(n_total[m]) - 0.3 * recency[m]
        else:
            s_v[m] = ever[m] @ params.w_spend[r] + 0.25 * np.log1p(n_total[m])
        if st.wealth_interaction:
            s_v[m] += 0.6 * st.wealth_interaction * (lifestyle[m] > 0.5) * (recency[m] < 0.5)
    return {"s_p": s_p, "s_c": s_c, "s_v": s_v, "has_notes": has_notes}


def _true_outcomes(spec, params, obs_client, obs_day, obs_regime, note_client, note_day,
                   slot_client, slot_day, concept, noise, C):
    """Expected outcomes for each observation from the notes as of (day - H)."""
    s = _note_scores(spec, params, obs_client, obs_day, obs_regime, note_client, note_day,
                     slot_client, slot_day, concept, noise, C)
    s_p, s_c, has_notes = s["s_p"], s["s_c"], s["has_notes"]
    for name, score, target in (("purchase", s_p, 0.35), ("churn", s_c, 0.15)):
        for r in (0, 1):
            m = (obs_regime == r) & has_notes
            if (name, r) not in params.alpha:
                if m.sum() < 100:
                    continue
                params.alpha[(name, r)] = _calibrate_intercept(score[m], target)
    alpha = lambda name, r: params.alpha.get((name, r), params.alpha.get((name, 0), 0.0))  # noqa: E731
    a_p = np.where(obs_regime == 1, alpha("purchase", 1), alpha("purchase", 0))
    a_c = np.where(obs_regime == 1, alpha("churn", 1), alpha("churn", 0))
    p_purchase = _flip(1 / (1 + np.exp(-(a_p + s_p))))
    p_churn = _flip(1 / (1 + np.exp(-(a_c + s_c))))
    spend = _spend(s["s_v"], spec.structure)
    return {"p_purchase": p_purchase, "p_churn": p_churn, "spend": spend,
            "expected_clv": p_purchase * spend, "has_notes": has_notes}


def _spend(s_v: np.ndarray, st: Structure) -> np.ndarray:
    """Expected spend of a purchase from its spend score."""
    return 1500.0 * np.exp(np.clip(s_v, -2.0, st.spend_cap))


def _pair(obs_client, as_of, row_client, row_day):
    """All (observation, row) pairs of the same client with row_day <= as_of; rows sorted by client."""
    order = np.argsort(row_client, kind="stable")
    rc, rd = row_client[order], row_day[order]
    lo = np.searchsorted(rc, obs_client, side="left")
    hi = np.searchsorted(rc, obs_client, side="right")
    lens = hi - lo
    obs_idx = np.repeat(np.arange(len(obs_client)), lens)
    offsets = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    pos = np.repeat(lo, lens) + offsets
    age = as_of[obs_idx] - rd[pos]
    ok = age >= 0
    return obs_idx[ok], order[pos[ok]], age[ok]


def _calibrate_intercept(score: np.ndarray, target: float, prob=lambda x: 1 / (1 + np.exp(-x))) -> float:
    """The intercept a whose mean ``prob(a + score)`` is ``target`` (``prob`` increasing; default: logistic)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(prob(mid + score)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _flip(p):
    return p * (1 - 2 * _LABEL_FLIP) + _LABEL_FLIP


def _draw_labels(truth, rng, sigma: float = _SPEND_SIGMA):
    purchased = (rng.random(len(truth["p_purchase"])) < truth["p_purchase"]).astype(int)
    churned = (rng.random(len(truth["p_churn"])) < truth["p_churn"]).astype(int)
    noise = rng.lognormal(-sigma**2 / 2, sigma, len(purchased))
    return {"purchased": purchased, "churned": churned,
            "lifetime_value": purchased * truth["spend"] * noise}


def _purchase_process(spec: WorldSpec, params: _Params, n: int, note_rows: tuple, rng: np.random.Generator) -> dict:
    """Purchases of ``n`` clients: a Poisson process whose daily rate is constant on blocks of
    :data:`_BLOCK_DAYS` days and set, for the block starting on day b, by what is observable as of
    b - H: the notes (:func:`_note_scores` of the observation (client, b)) and the client's own
    purchase days. Blocks are drawn in order, so the purchases a block's rate depends on exist.

    Returns:
        ``rate`` and ``mean`` (clients x blocks: purchases per day, mean amount of a purchase),
        ``starts`` and ``lengths`` of the blocks, one entry per purchase in ``client``, ``day``,
        ``amount``, one per distinct purchase day in ``buy_client``, ``buy_day``, and each client's
        ``first_note`` day (inf: none).
    """
    H, st = spec.horizon_days, spec.structure
    note_client, note_day = note_rows[0], note_rows[1]
    first_note = np.full(n, np.inf)
    np.minimum.at(first_note, note_client, note_day)
    starts = np.arange(0, spec.days, _BLOCK_DAYS)
    lengths = np.minimum(_BLOCK_DAYS, spec.days - starts)
    rate, mean = np.zeros((n, len(starts))), np.zeros((n, len(starts)))
    clients = np.arange(n)
    buy_client, buy_day = np.zeros(0, np.int64), np.zeros(0, np.int64)      # distinct purchase days
    events = []
    for k, (b, length) in enumerate(zip(starts, lengths)):
        t = b - H
        regime = int(bool(spec.drift_day) and b >= spec.drift_day)
        s = _note_scores(spec, params, clients, np.full(n, b), np.full(n, regime), *note_rows)
        seen = buy_day <= t
        last = np.full(n, -np.inf)
        np.maximum.at(last, buy_client[seen], buy_day[seen])
        recent = np.bincount(buy_client[seen & (buy_day > t - 365)], minlength=n)
        bought = last > -np.inf
        # frequent recent buyers buy again; a known client who never bought is like a lapsed one
        history = np.where(bought, 0.9 * np.log1p(recent) - 0.8 * np.minimum((t - last) / 180.0, 2.0), -0.8)
        score = s["s_p"] - 0.5 * s["s_c"] + history
        known = bought | (first_note <= t)
        if ("rate", k) not in params.alpha:
            params.alpha[("rate", k)] = (
                _calibrate_intercept(score[known], _PURCHASE_TARGET, lambda x: 1 - np.exp(-_per_horizon(x)))
                if known.sum() >= 100 else params.alpha.get(("rate", k - 1), 0.0))
        rate[:, k] = np.where(known, _per_horizon(params.alpha[("rate", k)] + score), _ACQUIRE) / H
        mean[:, k] = _spend(s["s_v"], st)
        count = rng.poisson(rate[:, k] * length)
        client = np.repeat(clients, count)
        day = b + rng.integers(0, length, len(client))
        events.append((client, day, mean[client, k] * rng.lognormal(-st.spend_sigma**2 / 2, st.spend_sigma,
                                                                     len(client))))
        key = np.unique(client * spec.days + day)
        buy_client, buy_day = np.concatenate([buy_client, key // spec.days]), np.concatenate([buy_day, key % spec.days])
    client, day, amount = (np.concatenate(parts) for parts in zip(*events))
    return {"rate": rate, "mean": mean, "starts": starts, "lengths": lengths, "client": client, "day": day,
            "amount": amount, "buy_client": buy_client, "buy_day": buy_day, "first_note": first_note}


def _per_horizon(x):
    """Expected purchases in H days of a known client with intensity score ``x``: bounded both ways."""
    return _RATE_FLOOR + _RATE_TOP / (1 + np.exp(-x))


def _purchase_truth(spec: WorldSpec, process: dict, n: int) -> dict:
    """The true expected outcomes on the label policy's grid (:mod:`mlcore.labels`) for every client
    known as of d - H (a note or a purchase by then): every rate of the window (d - H, d] is set as of
    d - H, so the number of purchases in it is Poisson with a known mean."""
    policy = LabelPolicy(horizon_days=spec.horizon_days)
    H, A = policy.horizon_days, policy.active
    grid = outcome_dates(spec.start, spec.end, policy)
    buy_client, buy_day = process["buy_client"], process["buy_day"]
    first_buy = np.full(n, np.inf)
    np.minimum.at(first_buy, buy_client, buy_day)
    starts, ends = process["starts"], process["starts"] + process["lengths"]
    value_rate = process["rate"] * process["mean"]
    out = {k: [] for k in ("client", "day", "p_purchase", "p_churn", "expected_clv", "has_notes")}
    for date in grid:
        d = (date - spec.start).days
        t = d - H
        known = np.flatnonzero((process["first_note"] <= t) | (first_buy <= t))
        overlap = np.clip(np.minimum(ends, d + 1) - np.maximum(starts, t + 1), 0, None)
        expected = process["rate"][known] @ overlap
        active = np.bincount(buy_client[(buy_day > t - A) & (buy_day <= t)], minlength=n)[known] > 0
        out["client"].append(known)
        out["day"].append(np.full(len(known), d))
        out["p_purchase"].append(1 - np.exp(-expected))
        out["p_churn"].append(active * np.exp(-expected))
        out["expected_clv"].append(value_rate[known] @ overlap)
        out["has_notes"].append(process["first_note"][known] <= t)
    out = {k: np.concatenate(v) for k, v in out.items()}
    order = np.lexsort((out["day"], out["client"]))
    return {k: v[order] for k, v in out.items()}


def _transaction_lines(spec: WorldSpec, z: np.ndarray, process: dict, first_tx: int, ids: np.ndarray,
                       rng: np.random.Generator) -> pd.DataFrame:
    """One receipt per purchase of ``process``, split into one to three lines; a line's category
    follows its amount (fragrance is cheap, high jewelry is not) and the client's tastes, its store
    mostly the client's home boutique. Every amount is positive: returns are not simulated."""
    n_tx = len(process["client"])
    order = np.lexsort((process["day"], process["client"]))
    client, day, amount = process["client"][order], process["day"][order], process["amount"][order]
    home = rng.choice(len(STORES), len(z), p=[0.2, 0.15, 0.15, 0.12, 0.1, 0.1, 0.08, 0.1])
    away = rng.random(n_tx)
    store = np.where(away < 0.85, home[client], rng.integers(0, len(STORES), n_tx))
    n_lines = 1 + (rng.random(n_tx) < 0.25) + (rng.random(n_tx) < 0.08)
    tx = np.repeat(np.arange(n_tx), n_lines)
    share = rng.gamma(2.0, size=len(tx))
    share /= np.bincount(tx, weights=share)[tx]
    line_amount = np.maximum(np.round(amount[tx] * share, 2), 0.01)
    price = np.log([c[1] for c in CATEGORIES])
    fit = -((np.log(line_amount)[:, None] - price[None, :]) ** 2) / (2 * 0.8**2)
    taste = z[client[tx]][:, 4:8] @ _CATEGORY_TASTES + 0.5 * z[client[tx], _WEALTH, None] * (price > np.log(3000))
    category = np.argmax(fit + taste + rng.gumbel(size=fit.shape), axis=1)
    quantity = 1 + (rng.random(len(tx)) < 0.06)
    # a transaction_id names one line (the data contract); its receipt number is the purchase's
    receipt = "T" + pd.Series(np.arange(first_tx, first_tx + n_tx), dtype="int64").astype(str).str.zfill(9)
    line_no = np.arange(len(tx)) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines) + 1
    return pd.DataFrame({
        "client_id": ids[client[tx]],
        "date": np.datetime64(spec.start) + day[tx].astype("timedelta64[D]"),
        "amount": line_amount,
        "transaction_id": receipt.to_numpy()[tx] + "-" + line_no.astype(str),
        "store": np.asarray(STORES)[store[tx]],
        "category": np.array([c[0] for c in CATEGORIES])[category],
        "quantity": quantity,
    })


def write_world(spec: WorldSpec, out: str | Path) -> dict:
    """Write notes.csv, note_concepts.csv, outcomes.csv (transactions.csv with ``spec.purchases``),
    truth.csv and taxonomy.csv to ``out``.

    Returns:
        Row counts per file.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tax = taxonomy()
    rng = np.random.default_rng(spec.seed)
    params = _draw_params(rng, tax, spec.drift_flip_share, spec.structure)
    names = {**dict(world_files(spec.purchases)), "truth": "truth.csv"}
    counts = dict.fromkeys(names, 0)
    with Progress(f"synth {out.name}", total=spec.n_clients, unit="clients") as bar:
        for first in range(0, spec.n_clients, spec.chunk_clients):
            n = min(spec.chunk_clients, spec.n_clients - first)
            chunk_rng = np.random.default_rng([spec.seed, first])
            frames = _generate_chunk(spec, params, tax, first, n, counts["notes"], chunk_rng,
                                     counts.get("transactions", 0))
            for key, frame in zip(names, frames):
                frame.to_csv(out / names[key], mode="w" if first == 0 else "a", header=first == 0, index=False,
                             date_format="%Y-%m-%d")
                counts[key] += len(frame)
            bar.step(first + n, f"{counts['notes']:,} notes")
    tax[["concept_id", "bucket"] + [f"alias_{lang}" for lang in LANGUAGES]].to_csv(out / "taxonomy.csv", index=False)
    return counts


def world_files(purchases: bool = False) -> tuple[tuple[str, str], ...]:
    """(ingest kind, file name) of each file a world holds for loading, in loading order."""
    last = ("transactions", "transactions.csv") if purchases else ("outcomes", "outcomes.csv")
    return (("notes", "notes.csv"), ("concepts", "note_concepts.csv"), last)


def rows_by_day(world: str | Path, start: dt.date) -> dict[str, pd.DataFrame]:
    """A written world's notes, concepts and outcomes, each with its day number ``_day`` from ``start``
    (concepts take their note's day), as text columns: for replaying a world day by day."""
    world = Path(world)
    frames = {kind: pd.read_csv(world / name, dtype=str) for kind, name in
              (("notes", "notes.csv"), ("concepts", "note_concepts.csv"), ("outcomes", "outcomes.csv"))}
    day_of = lambda s: (pd.to_datetime(s) - pd.Timestamp(start)).dt.days.to_numpy()  # noqa: E731
    frames["notes"]["_day"] = day_of(frames["notes"]["date"])
    frames["concepts"] = frames["concepts"].merge(frames["notes"][["note_id", "_day"]], on="note_id")
    frames["outcomes"]["_day"] = day_of(frames["outcomes"]["date"])
    return frames
