-- Estimated (label-free) AUC of each tier's newest scores, before their outcomes mature: the band,
-- the same estimate on the model's validation window, and the calibration (ECE) it relies on.
WITH latest AS (
    SELECT DISTINCT ON (tier) *
    FROM live_performance
    WHERE est_purchase_auc IS NOT NULL
    ORDER BY tier, check_date DESC
)
SELECT tier, check_date, estimated_for, estimated_model_version,
       round(est_purchase_auc::numeric, 3) AS est_purchase_auc,
       round(est_purchase_auc_lo::numeric, 3) AS lo,
       round(est_purchase_auc_hi::numeric, 3) AS hi,
       round(est_purchase_auc_reference::numeric, 3) AS validation_estimate,
       round(purchase_ece::numeric, 3) AS purchase_ece,
       round(est_churn_auc::numeric, 3) AS est_churn_auc,
       round(est_churn_auc_reference::numeric, 3) AS churn_validation_estimate,
       estimate_decision
FROM latest
ORDER BY tier;
