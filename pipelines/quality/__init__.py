"""pipelines/quality."""
