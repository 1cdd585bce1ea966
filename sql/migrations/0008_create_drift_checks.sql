-- One row per drift check of a tier's champion: live metrics on matured outcomes vs the validation baseline.
CREATE TABLE drift_checks (
    id            bigserial PRIMARY KEY,
    check_date    date NOT NULL,
    tier          text NOT NULL CHECK (tier IN ('fast', 'elite')),
    model_version integer NOT NULL,
    window_start  date NOT NULL,
    window_end    date NOT NULL,
    n             integer NOT NULL,
    metrics       jsonb NOT NULL,
    baseline      jsonb NOT NULL,
    diagnostics   jsonb NOT NULL DEFAULT '{}',
    breach        boolean,
    decision      text NOT NULL CHECK (decision IN ('ok', 'breach', 'drift', 'insufficient_data', 'recovered')),
    action        text NOT NULL CHECK (action IN ('none', 'alert', 'retrain', 'alert_and_retrain', 'alert_only_cooldown',
                                                  'retrain_skipped_cooldown', 'resolved')),
    episode_id    bigint,
    run_id        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (check_date, tier)
);
