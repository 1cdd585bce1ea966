-- Live performance of each tier per day (one drift check per tier and day): the realized AUC of the
-- predictions it served (matched with matured outcomes), beside the validation baseline of the
-- versions that made them and the breach threshold (baseline - tolerance); and, for the predictions
-- too young to have outcomes, the *estimated* AUC (label-free, from the calibrated probabilities)
-- beside the same estimate on the validation window. Estimated columns are never a realized result.
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
       tolerance,
       -- what the breach rule compares with baseline - tolerance: the live AUC's upper bound widened by
       -- the baseline's own uncertainty (mlcore.drift.upper_bound)
       (metrics -> 'purchase' -> 'auc' ->> 'upper_vs_baseline')::float AS purchase_auc_bound,
       (metrics -> 'churn' -> 'auc' ->> 'upper_vs_baseline')::float    AS churn_auc_bound,
       versions AS served_versions,
       (estimate ->> 'scored_for')::date                    AS estimated_for,
       (estimate ->> 'model_version')::int                  AS estimated_model_version,
       (estimate -> 'purchase' ->> 'value')::float          AS est_purchase_auc,
       (estimate -> 'purchase' ->> 'lo')::float             AS est_purchase_auc_lo,
       (estimate -> 'purchase' ->> 'hi')::float             AS est_purchase_auc_hi,
       (estimate -> 'purchase' ->> 'reference')::float      AS est_purchase_auc_reference,
       (estimate -> 'churn' ->> 'value')::float             AS est_churn_auc,
       (estimate -> 'churn' ->> 'lo')::float                AS est_churn_auc_lo,
       (estimate -> 'churn' ->> 'hi')::float                AS est_churn_auc_hi,
       (estimate -> 'churn' ->> 'reference')::float         AS est_churn_auc_reference,
       (estimate -> 'purchase' ->> 'ece')::float            AS purchase_ece,
       (estimate -> 'churn' ->> 'ece')::float               AS churn_ece,
       estimate_decision
FROM drift_checks;
