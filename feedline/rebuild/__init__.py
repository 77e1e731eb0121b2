"""Rebuilding derived data from the event archive with the same pure rules as streaming."""
