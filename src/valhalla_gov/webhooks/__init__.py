"""Webhooks: signed notifications of audited events, sent from a durable outbox.

The outbox is the audit log itself plus one delivery cursor per webhook
(see docs/webhooks.md): a write never does anything extra for webhooks.
"""
