-- The outcome log: real labels, one row per client per observation date (data contract: outcomes).
CREATE TABLE outcomes (
    client_id      text COLLATE "C" NOT NULL CHECK (client_id <> ''),
    date           date NOT NULL,
    purchased      smallint NOT NULL CHECK (purchased IN (0, 1)),
    churned        smallint NOT NULL CHECK (churned IN (0, 1)),
    lifetime_value double precision NOT NULL CHECK (lifetime_value >= 0),
    loaded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, date)
);
CREATE INDEX outcomes_date_idx ON outcomes (date);
