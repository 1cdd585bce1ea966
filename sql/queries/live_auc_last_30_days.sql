-- Live AUC of the Elite champion over the last 30 checks, against its baseline and breach threshold.
WITH recent AS (
    SELECT *
    FROM live_performance
    WHERE tier = 'elite'
    ORDER BY check_date DESC
    LIMIT 30
)
SELECT check_date, model_version, n, decision,
       round(purchase_auc::numeric, 3) AS purchase_auc,
       round(purchase_auc_baseline::numeric, 3) AS baseline,
       round((purchase_auc_baseline - tolerance)::numeric, 3) AS threshold,
       round(churn_auc::numeric, 3) AS churn_auc
FROM recent
ORDER BY check_date;
