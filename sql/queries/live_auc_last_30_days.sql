-- Live AUC of what Elite served over the last 30 checks (realized, on matured outcomes), against the
-- served versions' baseline and the breach threshold, beside the estimated AUC of the newest scores.
WITH recent AS (
    SELECT *
    FROM live_performance
    WHERE tier = 'elite'
    ORDER BY check_date DESC
    LIMIT 30
)
SELECT check_date, model_version, served_versions, n, decision,
       round(purchase_auc::numeric, 3) AS purchase_auc,
       round(purchase_auc_baseline::numeric, 3) AS baseline,
       round((purchase_auc_baseline - tolerance)::numeric, 3) AS threshold,
       round(churn_auc::numeric, 3) AS churn_auc,
       round(est_purchase_auc::numeric, 3) AS estimated_purchase_auc,
       estimate_decision
FROM recent
ORDER BY check_date;
