-- Every drift check with its decision and action, the alert of its realized episode and the warning
-- of its estimated episode (if any).
CREATE VIEW drift_history AS
SELECT d.check_date, d.tier, d.model_version, d.window_start, d.window_end, d.n, d.breach, d.decision,
       d.action, d.episode_id,
       (d.diagnostics -> 'score_psi' ->> 'psi_purchase')::float AS score_psi_purchase,
       (d.diagnostics -> 'concept_mix' ->> 'psi')::float      AS concept_mix_psi,
       a.id AS alert_id, a.title AS alert_title, a.status AS alert_status,
       d.estimate_drop, d.estimate_decision, d.estimate_action, d.estimate_episode_id,
       w.id AS warning_id, w.title AS warning_title
FROM drift_checks d
LEFT JOIN alerts a ON a.dedup_key = 'drift:' || d.tier || ':' || d.episode_id
LEFT JOIN alerts w ON w.dedup_key = 'drift_estimate:' || d.tier || ':' || d.estimate_episode_id;
