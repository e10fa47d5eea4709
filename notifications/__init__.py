"""Notification templates and delivery channels; the outbox rows are written by `states`."""
