-- Distribution of the latest scores per tier: deciles of purchase likelihood and churn risk.
WITH latest_day AS (
    SELECT tier, max(scored_for) AS scored_for
    FROM predictions
    GROUP BY tier
)
SELECT p.tier, p.scored_for, count(*) AS clients,
       percentile_cont(ARRAY[0.1, 0.5, 0.9]) WITHIN GROUP (ORDER BY p.purchase_likelihood) AS purchase_p10_p50_p90,
       percentile_cont(ARRAY[0.1, 0.5, 0.9]) WITHIN GROUP (ORDER BY p.churn_risk) AS churn_p10_p50_p90,
       round(avg(p.predicted_clv)::numeric, 2) AS mean_clv
FROM predictions p
JOIN latest_day USING (tier, scored_for)
GROUP BY p.tier, p.scored_for
ORDER BY p.tier;
