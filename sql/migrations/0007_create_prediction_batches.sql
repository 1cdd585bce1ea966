-- Partitions of a scoring run, staged before one transaction publishes them into predictions.
CREATE TABLE prediction_batches (
    run_id              text NOT NULL,
    partition           integer NOT NULL,
    scored_for          date NOT NULL,
    tier                text NOT NULL,
    client_id           text COLLATE "C" NOT NULL,
    model_version       integer NOT NULL,
    purchase_likelihood double precision NOT NULL,
    churn_risk          double precision NOT NULL,
    predicted_clv       double precision NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, partition, client_id)
);
