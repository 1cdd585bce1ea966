-- Every alert raised (drift episodes, task failures) and where it was delivered.
CREATE TABLE alerts (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL CHECK (kind IN ('drift', 'task_failure', 'test')),
    dedup_key   text NOT NULL UNIQUE,
    tier        text,
    title       text NOT NULL,
    payload     jsonb NOT NULL,
    deliveries  jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'recorded')),
    repeats     integer NOT NULL DEFAULT 0
);
