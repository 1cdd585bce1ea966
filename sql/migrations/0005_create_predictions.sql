-- Scores: one row per (scored_for, tier, client_id); a run replaces its (scored_for, tier) slice.
CREATE TABLE predictions (
    scored_for          date NOT NULL,
    tier                text NOT NULL CHECK (tier IN ('fast', 'elite')),
    client_id           text COLLATE "C" NOT NULL,
    model_version       integer NOT NULL,
    purchase_likelihood double precision NOT NULL CHECK (purchase_likelihood BETWEEN 0 AND 1),
    churn_risk          double precision NOT NULL CHECK (churn_risk BETWEEN 0 AND 1),
    predicted_clv       double precision NOT NULL CHECK (predicted_clv >= 0),
    run_id              text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scored_for, tier, client_id),
    FOREIGN KEY (tier, model_version) REFERENCES model_versions (tier, version)
);
CREATE INDEX predictions_client_idx ON predictions (client_id, scored_for);
