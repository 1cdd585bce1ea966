-- Clients ranked by value at risk (churn risk x predicted CLV) on their freshest prediction;
-- Elite is preferred to Fast when both scored the client on the same day.
CREATE VIEW at_risk_clients AS
WITH freshest AS (
    SELECT DISTINCT ON (client_id)
           client_id, tier, scored_for, model_version, churn_risk, predicted_clv, purchase_likelihood
    FROM latest_predictions
    ORDER BY client_id, scored_for DESC, (tier = 'elite') DESC
)
SELECT rank() OVER (ORDER BY churn_risk * predicted_clv DESC, client_id) AS risk_rank,
       client_id, tier, scored_for, model_version,
       churn_risk, predicted_clv, churn_risk * predicted_clv AS value_at_risk, purchase_likelihood
FROM freshest;
