-- Drift episodes: when each opened, how long it lasted, whether it was retrained, and its alert.
WITH episodes AS (
    SELECT tier, episode_id,
           min(check_date) AS opened,
           max(check_date) FILTER (WHERE decision = 'recovered') AS recovered,
           bool_or(action IN ('retrain', 'alert_and_retrain')) AS retrained,
           max(alert_status) AS alert_status
    FROM drift_history
    WHERE episode_id IS NOT NULL
    GROUP BY tier, episode_id
)
SELECT tier, episode_id, opened, recovered, retrained, alert_status
FROM episodes
ORDER BY opened;
