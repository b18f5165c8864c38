"""The ``livewatch`` command line (:mod:`monitor.cli.main` is the entry point)."""
