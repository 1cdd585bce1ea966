-- Drift checks monitor what was served (any model version) and estimate performance before labels
-- mature: which versions the matches came from, the label-free estimate and its own decision.
ALTER TABLE drift_checks
    ADD COLUMN versions            jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN estimate            jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN estimate_drop       boolean,
    ADD COLUMN estimate_decision   text NOT NULL DEFAULT 'unavailable'
        CHECK (estimate_decision IN ('estimated_ok', 'estimated_dip', 'estimated_drop', 'estimated_recovered',
                                     'unavailable')),
    ADD COLUMN estimate_action     text NOT NULL DEFAULT 'none' CHECK (estimate_action IN ('none', 'warn', 'resolved')),
    ADD COLUMN estimate_episode_id bigint;
COMMENT ON COLUMN drift_checks.model_version IS 'The champion when the check ran; the matched predictions'' versions are in versions.';
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN ('drift', 'drift_estimate', 'task_failure', 'test'));
