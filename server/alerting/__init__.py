"""Alerts on status transitions: the pure policy, messages, channels, storage and the tasks."""
