"""pipelines/streaming."""
