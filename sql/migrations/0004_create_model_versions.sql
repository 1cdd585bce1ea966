-- The model registry: every trained model, its validation metrics and its hashed artifact.
-- Promotion moves status 'champion'; rows are never deleted, so history allows rollback.
CREATE TABLE model_versions (
    id             bigserial PRIMARY KEY,
    tier           text NOT NULL CHECK (tier IN ('fast', 'elite')),
    version        integer NOT NULL,
    status         text NOT NULL CHECK (status IN ('candidate', 'champion', 'retired')),
    reason         text NOT NULL CHECK (reason IN ('schedule', 'drift', 'manual')),
    trained_at     timestamptz NOT NULL DEFAULT now(),
    as_of          date NOT NULL,
    train_start    date,
    train_end      date,
    valid_start    date,
    valid_end      date,
    n_train        integer NOT NULL,
    n_valid        integer NOT NULL,
    fit_seconds    double precision,
    metrics        jsonb NOT NULL,
    gate           jsonb,
    artifact_path  text NOT NULL,
    sha256         char(64) NOT NULL,
    promoted_at    timestamptz,
    UNIQUE (tier, version)
);
CREATE UNIQUE INDEX model_versions_one_champion_idx ON model_versions (tier) WHERE status = 'champion';
