"""The model registry: versioned, hashed artifacts in a file store, metadata in ``model_versions``.

An artifact is only unpickled after its bytes hash to the sha256 the registry recorded when it
was registered. Promotion moves the ``champion`` status; rows are never deleted. Each database
keeps its artifacts in its own folder of the store (``model_store_key``), so databases can share
one store.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
from pathlib import Path

import joblib
import pandas as pd
import sqlalchemy as sa

from mlcore.db import advisory_xact_lock
from mlcore.exceptions import ArtifactIntegrityError, ModelNotFoundError
from mlcore.tiers import TIERS

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    id: int
    tier: str
    version: int
    status: str
    reason: str
    as_of: dt.date
    metrics: dict
    artifact_path: str
    sha256: str


_COLUMNS = "id, tier, version, status, reason, as_of, metrics, artifact_path, sha256"


class Registry:
    """Postgres-backed registry with a local artifact store.

    Args:
        engine: Engine of the scoring database.
        store: Folder holding the artifacts; ``artifact_path`` is relative to it.
    """

    def __init__(self, engine: sa.Engine, store: Path):
        self.engine = engine
        self.store = Path(store)
        self._key = None

    @property
    def key(self) -> str:
        """This database's folder in the store (migration 0019), read once."""
        if self._key is None:
            with self.engine.connect() as conn:
                key = conn.execute(sa.text("SELECT key FROM model_store_key")).scalar_one_or_none()
            if key is None or not _KEY.fullmatch(key):
                raise ArtifactIntegrityError(f"model_store_key holds {key!r}, not one folder name of letters, digits, "
                                             f"'_' and '-'; restore the row (migration 0019 wrote it).")
            self._key = key
        return self._key

    def register(self, tier: str, pipeline, *, reason: str, as_of: dt.date, metrics: dict, windows: dict,
                 n_train: int, n_valid: int, fit_seconds: float, gate: dict | None = None) -> ModelVersion:
        """Store ``pipeline`` as a new version of ``tier`` and return its registry entry.

        With ``gate`` (the promotion gate's decision) the row carries the decision and, when it
        promotes, becomes the champion in the same transaction: no version is ever left without its
        decision. The artifact is written before the row and removed again if the row is not committed.
        """
        _check_tier(tier)
        buf = io.BytesIO()
        joblib.dump(pipeline, buf, compress=3)
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        written = None
        key = self.key                      # read before the tier's lock is taken
        try:
            with self.engine.begin() as conn:
                advisory_xact_lock(conn, f"model_versions:{tier}")
                version = conn.execute(sa.text("SELECT coalesce(max(version), 0) + 1 FROM model_versions "
                                               "WHERE tier = :t"), {"t": tier}).scalar_one()
                rel = artifact_name(tier, version, sha, key)
                self._sweep_orphans(tier, version)
                _atomic_write(self.store / rel, data)
                written = self.store / rel
                conn.execute(sa.text(
                    "INSERT INTO model_versions (tier, version, status, reason, as_of, train_start, train_end, "
                    " valid_start, valid_end, n_train, n_valid, fit_seconds, metrics, gate, artifact_path, sha256) "
                    "VALUES (:tier, :version, 'candidate', :reason, :as_of, :train_start, :train_end, :valid_start, "
                    " :valid_end, :n_train, :n_valid, :fit_seconds, CAST(:metrics AS jsonb), CAST(:gate AS jsonb), "
                    " :path, :sha)"),
                    {"tier": tier, "version": version, "reason": reason, "as_of": as_of, **windows,
                     "n_train": n_train, "n_valid": n_valid, "fit_seconds": fit_seconds,
                     "metrics": json.dumps(metrics), "gate": json.dumps(gate) if gate is not None else None,
                     "path": rel, "sha": sha})
                if gate is not None and gate.get("promote"):
                    self._make_champion(conn, tier, version, "gate", gate)
        except BaseException:
            if written is not None:
                written.unlink(missing_ok=True)
            raise
        return self.get(tier, version)

    def _sweep_orphans(self, tier: str, next_version: int) -> None:
        """Under the tier's lock: delete artifacts (and temporary files) of versions no row can have yet.

        A registration killed between writing its file and committing its row (kill -9 runs no
        cleanup) leaves such a file; no row vouches for it, so it is never loaded, only removed here.
        """
        pattern = re.compile(rf"^{tier}-v(\d+)-[0-9a-f]{{12}}\.joblib(\.tmp\d+)?$")
        for path in (self.store / self.key / tier).glob(f"{tier}-v*"):
            m = pattern.match(path.name)
            if m and (int(m.group(1)) >= next_version or m.group(2)) and path.is_file():
                log.warning("removing %s: an artifact no registry row vouches for (a killed registration)", path)
                path.unlink(missing_ok=True)

    @staticmethod
    def _make_champion(conn, tier: str, version: int, kind: str, decision: dict) -> None:
        """Inside the caller's locked transaction: retire the champion, crown ``version``, keep the record."""
        previous = conn.execute(sa.text("SELECT version FROM model_versions WHERE tier = :t AND status = 'champion'"),
                                {"t": tier}).scalar_one_or_none()
        conn.execute(sa.text("UPDATE model_versions SET status = 'retired' WHERE tier = :t "
                             "AND status = 'champion' AND version <> :v"), {"t": tier, "v": version})
        conn.execute(sa.text("UPDATE model_versions SET status = 'champion', promoted_at = now() "
                             "WHERE tier = :t AND version = :v"), {"t": tier, "v": version})
        conn.execute(sa.text("INSERT INTO model_promotions (tier, version, previous_version, kind, decision) "
                             "VALUES (:t, :v, :p, :k, CAST(:d AS jsonb))"),
                     {"t": tier, "v": version, "p": previous, "k": kind, "d": json.dumps(decision)})

    def champion(self, tier: str) -> ModelVersion | None:
        """The current champion of ``tier``, or None."""
        _check_tier(tier)
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM model_versions WHERE tier = :t "
                                       "AND status = 'champion'"), {"t": tier}).one_or_none()
        return _entry(row) if row else None

    def get(self, tier: str, version: int) -> ModelVersion:
        """One registered version; raises ModelNotFoundError when absent."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM model_versions WHERE tier = :t "
                                       "AND version = :v"), {"t": tier, "v": version}).one_or_none()
        if row is None:
            raise ModelNotFoundError(f"no {tier} model with version {version}; `mlcore models` lists them.")
        return _entry(row)

    def require_champion(self, tier: str) -> ModelVersion:
        mv = self.champion(tier)
        if mv is None:
            raise ModelNotFoundError(f"no champion {tier} model is registered; train one first with "
                                     f"`mlcore train --tier {tier}`.")
        return mv

    def artifact_file(self, mv: ModelVersion) -> Path:
        """Where ``mv``'s artifact must be: the name ``register`` gives it, inside the store (or the
        name it gave before migration 0019, for versions registered then).

        The registry row alone is not trusted with a path: anyone who can write ``model_versions``
        could point it (absolute, ``..``, a symlink) at a pickle of theirs with a matching sha256.
        Raises ArtifactIntegrityError for any other path, or when the file is not a regular file
        inside the store.
        """
        expected = artifact_name(mv.tier, mv.version, mv.sha256)
        if mv.artifact_path != expected:
            expected = artifact_name(mv.tier, mv.version, mv.sha256, self.key)
        if mv.artifact_path != expected:
            raise ArtifactIntegrityError(
                f"artifact path of {mv.tier} v{mv.version} is {mv.artifact_path!r}, not {expected!r} in the model "
                f"store; refusing to load it (artifacts are only read from the store, by the name the registry "
                f"gave them). Retrain the tier or restore the row.")
        path = self.store / expected
        store = self.store.resolve()
        if path.is_symlink() or not path.resolve().is_relative_to(store):
            raise ArtifactIntegrityError(f"artifact of {mv.tier} v{mv.version} at {path} leads outside the model "
                                         f"store {store}; refusing to load it.")
        if path.exists() and not path.is_file():
            raise ArtifactIntegrityError(f"artifact of {mv.tier} v{mv.version} at {path} is not a file; restore "
                                         f"the original file or retrain the tier.")
        return path

    def load(self, mv: ModelVersion):
        """Unpickle ``mv``'s artifact after checking its place in the store and its sha256 against the registry."""
        path = self.artifact_file(mv)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"artifact of {mv.tier} v{mv.version} is missing at {path}.") from None
        sha = hashlib.sha256(data).hexdigest()
        if sha != mv.sha256:
            raise ArtifactIntegrityError(
                f"artifact of {mv.tier} v{mv.version} at {path} has sha256 {sha}, but the registry recorded "
                f"{mv.sha256}; refusing to load it. Restore the original file or retrain the tier.")
        return joblib.load(io.BytesIO(data))

    def promote(self, tier: str, version: int, decision: dict | None = None) -> ModelVersion:
        """Make ``version`` the champion of ``tier`` by hand (e.g. a rollback); the previous one is retired.

        The version's training-time gate decision is kept as it was; this promotion is recorded in
        ``model_promotions`` beside every earlier one.
        """
        with self.engine.begin() as conn:
            advisory_xact_lock(conn, f"model_versions:{tier}")
            found = conn.execute(sa.text("SELECT 1 FROM model_versions WHERE tier = :t AND version = :v"),
                                 {"t": tier, "v": version}).one_or_none()
            if found is None:
                raise ModelNotFoundError(f"no {tier} model with version {version}; `mlcore models` lists them.")
            self._make_champion(conn, tier, version, "manual", decision or {"why": "manual promotion"})
        return self.get(tier, version)

    def promotions(self, tier: str) -> list[dict]:
        """Every promotion of ``tier``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version, previous_version, promoted_at, kind, decision "
                                        "FROM model_promotions WHERE tier = :t ORDER BY id"), {"t": tier})
            return [dict(r._mapping) for r in rows]

    def list(self) -> pd.DataFrame:
        """All versions, newest first, with their headline validation metrics and the model chosen per target."""
        sql = sa.text(
            "SELECT tier, version, status, reason, trained_at, as_of, n_train, n_valid, "
            " round(fit_seconds::numeric, 1) AS fit_s, "
            " (metrics -> 'purchase' -> 'auc' ->> 'value')::float AS purchase_auc, "
            " (metrics -> 'churn' -> 'auc' ->> 'value')::float AS churn_auc, "
            " (metrics -> 'clv' -> 'r2' ->> 'value')::float AS clv_r2, "
            + ", ".join(f"concat_ws('+', metrics -> '{t}' -> 'selection' ->> 'chosen', "
                        f"metrics -> '{t}' -> 'selection' -> 'calibration' ->> 'method') AS {t}_model"
                        for t in ("purchase", "churn", "clv"))
            + ", sha256 "
            "FROM model_versions ORDER BY tier, version DESC")
        with self.engine.connect() as conn:
            return pd.read_sql(sql, conn)


def artifact_name(tier: str, version: int, sha256: str, key: str | None = None) -> str:
    """The store-relative name of an artifact, e.g. ``prod-1a2b3c4d5e/elite/elite-v3-0123456789ab.joblib``
    (without ``key``: the name of a version registered before migration 0019)."""
    name = f"{tier}/{tier}-v{version}-{sha256[:12]}.joblib"
    return name if key is None else f"{key}/{name}"


_KEY = re.compile(r"[A-Za-z0-9_-]{1,80}")


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}.")


def _entry(row) -> ModelVersion:
    m = row._mapping
    metrics = m["metrics"] if isinstance(m["metrics"], dict) else json.loads(m["metrics"])
    return ModelVersion(m["id"], m["tier"], m["version"], m["status"], m["reason"], m["as_of"], metrics,
                        m["artifact_path"], m["sha256"].strip())


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
