-- Latest prediction per (tier, client): the analyst views read predictions in this order.
CREATE INDEX predictions_tier_client_latest_idx ON predictions (tier, client_id, scored_for DESC);
