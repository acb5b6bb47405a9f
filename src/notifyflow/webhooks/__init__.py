"""Signed outbound webhooks (DESIGN §8): subscriptions, the event outbox, Standard Webhooks
signatures and the receiver-address rules. Delivery itself is a Temporal workflow
(workflows/webhook_delivery.py) so it is retried durably for a day."""
