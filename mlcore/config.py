"""Settings, built once from environment variables and passed explicitly."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mlcore.exceptions import ConfigError


@dataclasses.dataclass(frozen=True)
class Settings:
    """Runtime configuration of the platform.

    Attributes:
        database_url: SQLAlchemy URL of the scoring database; None means the embedded server.
        home: Folder for local state (embedded Postgres data, model store).
        horizon_days: Prediction horizon H of the data contract.
        valid_days: Length of the most recent outcome window used for validation.
        embargo_days: Gap between the last training outcome and the validation window.
        promotion_margin: How much worse than the champion a candidate may be and still be promoted.
        score_chunk_size: Clients scored per chunk (bounds memory).
        n_bootstrap: Bootstrap resamples behind each metric interval.
        drift_window_days: Outcomes of this many latest days feed a drift check.
        drift_min_n: Fewer matched outcomes than this make a check "insufficient_data".
        drift_tolerance: A target breaches when its live AUC's upper bound is below baseline - tolerance.
        drift_cooldown_days: At most one drift-triggered retraining per tier in this many days.
        drift_match_days: An Elite prediction matches an outcome if scored at most this many days before date - H.
        drift_match_days_fast: The same for Fast, which scores a client when a note is uploaded and serves
            that score until the next one; None means H (a score older than H before the outcome is stale).
        drift_retrain_delay_days: Days between opening a drift episode and its retraining (labels to learn from).
        drift_valid_days: Validation window of a drift-triggered retraining (trained without embargo).
        drift_recent_weight: Weight of outcomes logged since the drift began, in a drift retraining.
        estimate_max_ece: Above this expected calibration error (on the validation window) the label-free
            performance estimate of a classifier is shown but decides nothing.
        train_max_clients: Train on the outcomes of at most this many clients (a fixed random sample);
            None trains on all. Bounds retraining time and memory on large client bases.
        train_max_rows: Fit on at most this many training rows (client, outcome date), a fixed random
            sample of them; validation keeps all its rows, a drift retraining all the rows since the
            drift began. Labels derived from transactions put a row on every grid date of every client
            (about 12 per client over two years), so this bounds retraining time whatever the history.
            None fits on all.
    """

    database_url: str | None = None
    home: Path = Path("var")
    horizon_days: int = 90
    valid_days: int = 60
    embargo_days: int | None = None
    promotion_margin: float = 0.01
    score_chunk_size: int = 20_000
    n_bootstrap: int = 200
    drift_window_days: int = 14
    drift_min_n: int = 300
    drift_tolerance: float = 0.02
    drift_cooldown_days: int = 14
    drift_match_days: int = 7
    drift_match_days_fast: int | None = None
    drift_retrain_delay_days: int = 12
    drift_valid_days: int = 3
    drift_recent_weight: float = 20.0
    estimate_max_ece: float = 0.05
    train_max_clients: int | None = None
    train_max_rows: int | None = 400_000

    def __post_init__(self):
        object.__setattr__(self, "home", Path(self.home))
        for name in ("horizon_days", "valid_days", "score_chunk_size", "n_bootstrap", "drift_window_days",
                     "drift_min_n", "drift_valid_days"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.embargo_days is not None and self.embargo_days < 0:
            raise ConfigError(f"embargo_days must be >= 0, got {self.embargo_days!r}.")
        if self.train_max_clients is not None and self.train_max_clients < 1000:
            raise ConfigError(f"train_max_clients must be at least 1000 (or unset), got {self.train_max_clients!r}.")
        if self.train_max_rows is not None and self.train_max_rows < 1000:
            raise ConfigError(f"train_max_rows must be at least 1000 (or unset), got {self.train_max_rows!r}.")
        if not 0 < self.estimate_max_ece <= 1:
            raise ConfigError(f"estimate_max_ece must be in (0, 1], got {self.estimate_max_ece!r}.")
        if not 0 <= self.promotion_margin < 1:
            raise ConfigError(f"promotion_margin must be in [0, 1), got {self.promotion_margin!r}.")

    @property
    def model_store(self) -> Path:
        return self.home / "models"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    def match_days(self, tier: str) -> int:
        """How old (beyond H) a served prediction of ``tier`` may be and still match an outcome."""
        if tier == "fast":
            return self.horizon_days if self.drift_match_days_fast is None else self.drift_match_days_fast
        return self.drift_match_days

    @property
    def embargo(self) -> int:
        return self.horizon_days if self.embargo_days is None else self.embargo_days

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        """Build settings from ``CLIENT_SCORING_*`` variables and ``DATABASE_URL``."""
        env = os.environ if environ is None else environ
        values = {
            "database_url": env.get("DATABASE_URL") or None,
            "home": Path(env.get("CLIENT_SCORING_HOME", "var")).resolve(),
        }
        for field in dataclasses.fields(cls):
            var = f"CLIENT_SCORING_{field.name.upper()}"
            raw = env.get(var)
            if raw is None or field.name in ("database_url", "home"):
                continue
            kind = float if field.type in ("float", float) else int
            if raw.strip().lower() in ("", "none") and "None" in str(field.type):
                values[field.name] = None       # e.g. CLIENT_SCORING_TRAIN_MAX_ROWS= : no cap
                continue
            try:
                values[field.name] = kind(raw)
            except ValueError:
                raise ConfigError(f"{var} must be {'a number' if kind is float else 'an integer'}, "
                                  f"got {raw!r}.") from None
        values.update(overrides)
        return cls(**values)
