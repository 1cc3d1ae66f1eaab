"""Messaging channels: how messages reach agents (webhooks, polled inboxes) and how replies go out."""
