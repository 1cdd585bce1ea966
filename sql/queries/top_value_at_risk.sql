-- The 20 clients with the most value at risk (churn risk x predicted CLV), on their freshest scores.
SELECT risk_rank, client_id, tier, scored_for, churn_risk, predicted_clv, value_at_risk
FROM at_risk_clients
WHERE risk_rank <= 20
ORDER BY risk_rank;
