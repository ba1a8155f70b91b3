-- The webhook delivery worker (DESIGN.md section 6).

-- Since when every delivery attempt to this subscription has failed (the first failure
-- after its last success); NULL while it is healthy. A subscription failing for
-- `[webhooks] disable_after_hours` is disabled.
ALTER TABLE webhook_subscriptions ADD COLUMN failing_since INTEGER;

-- Attempts made before the delivery was last replayed (POST .../retry): the retry
-- schedule of a replay starts afresh, counting only the attempts after it.
ALTER TABLE webhook_deliveries ADD COLUMN attempts_before_replay INTEGER NOT NULL DEFAULT 0;

-- GET /v1/webhooks/{id}/deliveries: a subscription's deliveries, newest first.
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, seq);
