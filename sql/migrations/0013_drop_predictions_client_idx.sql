-- predictions_tier_client_latest_idx (tier, client_id, scored_for DESC) serves every per-client read
-- (latest prediction, drift matching); one index fewer makes each nightly write cheaper.
DROP INDEX predictions_client_idx;
