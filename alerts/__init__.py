"""livewatch alerts: incidents, routing, muting, dedup, rendering and delivery (Slack, console)."""
