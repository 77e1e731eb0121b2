"""pipelines/batch."""
