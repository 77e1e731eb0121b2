"""The media pipeline: completed uploads are inspected, stripped and rendered by a worker."""
