-- Each tier's champion with its holdout metrics, their 95 % intervals and why it was trained.
SELECT tier, version, reason, as_of, n_train,
       purchase_auc, purchase_auc_lo, purchase_auc_hi,
       churn_auc, churn_auc_lo, churn_auc_hi,
       clv_r2, clv_r2_baseline, gate_decision
FROM model_registry
WHERE status = 'champion'
ORDER BY tier;
