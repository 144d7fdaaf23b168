"""Delivery channels: a generic JSON webhook, Slack, Microsoft Teams and SMTP e-mail."""
