-- Every promotion, kept: who became champion, over whom, when and why (the gate's decision, or a
-- manual promotion such as a rollback). model_versions.gate stays the decision made at training.
CREATE TABLE model_promotions (
    id                bigserial PRIMARY KEY,
    tier              text NOT NULL CHECK (tier IN ('fast', 'elite')),
    version           integer NOT NULL,
    previous_version  integer,
    promoted_at       timestamptz NOT NULL DEFAULT now(),
    kind              text NOT NULL CHECK (kind IN ('gate', 'manual')),
    decision          jsonb NOT NULL DEFAULT '{}',
    FOREIGN KEY (tier, version) REFERENCES model_versions (tier, version)
);
CREATE INDEX model_promotions_tier_idx ON model_promotions (tier, promoted_at);
-- The champions promoted before this table existed.
INSERT INTO model_promotions (tier, version, promoted_at, kind, decision)
SELECT tier, version, coalesce(promoted_at, trained_at), 'gate', coalesce(gate, '{}')
FROM model_versions WHERE status = 'champion';
GRANT SELECT ON model_promotions TO analyst;
