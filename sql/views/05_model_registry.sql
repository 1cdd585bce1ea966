-- The model registry with validation metrics, their intervals and the trivial baselines.
CREATE VIEW model_registry AS
SELECT tier, version, status, reason, trained_at, promoted_at, as_of,
       train_start, train_end, valid_start, valid_end, n_train, n_valid, fit_seconds,
       (metrics -> 'purchase' -> 'auc' ->> 'value')::float AS purchase_auc,
       (metrics -> 'purchase' -> 'auc' ->> 'lo')::float    AS purchase_auc_lo,
       (metrics -> 'purchase' -> 'auc' ->> 'hi')::float    AS purchase_auc_hi,
       (metrics -> 'churn' -> 'auc' ->> 'value')::float    AS churn_auc,
       (metrics -> 'churn' -> 'auc' ->> 'lo')::float       AS churn_auc_lo,
       (metrics -> 'churn' -> 'auc' ->> 'hi')::float       AS churn_auc_hi,
       (metrics -> 'clv' -> 'r2' ->> 'value')::float       AS clv_r2,
       (metrics -> 'clv' -> 'r2' ->> 'lo')::float          AS clv_r2_lo,
       (metrics -> 'clv' -> 'r2' ->> 'hi')::float          AS clv_r2_hi,
       (metrics -> 'clv' -> 'baseline' ->> 'r2')::float    AS clv_r2_baseline,
       gate ->> 'why' AS gate_decision,
       artifact_path, sha256
FROM model_versions;
