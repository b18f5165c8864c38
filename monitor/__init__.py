"""livewatch monitor: the composition root (config, source, store, pipeline, scheduler, CLI)."""
