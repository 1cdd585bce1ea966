-- Live performance of each tier's champion per day (one drift check per tier and day), beside
-- its validation baseline and the breach threshold (baseline - tolerance).
CREATE VIEW live_performance AS
SELECT check_date, tier, model_version, n, decision,
       (metrics -> 'purchase' -> 'auc' ->> 'value')::float  AS purchase_auc,
       (metrics -> 'purchase' -> 'auc' ->> 'lo')::float     AS purchase_auc_lo,
       (metrics -> 'purchase' -> 'auc' ->> 'hi')::float     AS purchase_auc_hi,
       (baseline -> 'purchase' -> 'auc' ->> 'value')::float AS purchase_auc_baseline,
       (metrics -> 'churn' -> 'auc' ->> 'value')::float     AS churn_auc,
       (metrics -> 'churn' -> 'auc' ->> 'lo')::float        AS churn_auc_lo,
       (metrics -> 'churn' -> 'auc' ->> 'hi')::float        AS churn_auc_hi,
       (baseline -> 'churn' -> 'auc' ->> 'value')::float    AS churn_auc_baseline,
       (metrics -> 'purchase' -> 'brier' ->> 'value')::float AS purchase_brier,
       (metrics -> 'churn' -> 'brier' ->> 'value')::float   AS churn_brier,
       (metrics -> 'clv' -> 'r2' ->> 'value')::float        AS clv_r2,
       (metrics -> 'clv' -> 'mae' ->> 'value')::float       AS clv_mae,
       (baseline -> 'clv' -> 'r2' ->> 'value')::float       AS clv_r2_baseline,
       tolerance
FROM drift_checks;
