"""The HTTP edge: /metrics, /healthz and the read-only fleet status page; calls services only."""
