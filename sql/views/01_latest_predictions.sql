-- The latest prediction of every client, per tier, with the model version that made it.
CREATE VIEW latest_predictions AS
WITH latest AS (
    SELECT DISTINCT ON (tier, client_id)
           tier, client_id, scored_for, model_version, purchase_likelihood, churn_risk, predicted_clv,
           run_id, created_at
    FROM predictions
    ORDER BY tier, client_id, scored_for DESC
)
SELECT latest.*, mv.status AS model_status
FROM latest
JOIN model_versions mv USING (tier)
WHERE mv.version = latest.model_version;
