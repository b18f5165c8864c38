"""On-demand tools built on the pipeline: investigate, backtest, the demo warehouse and their reports."""
