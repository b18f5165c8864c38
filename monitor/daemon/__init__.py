"""The long-running daemon: APScheduler jobs, Prometheus metrics and self-monitoring."""
