"""jobs."""
import feedline  # noqa: F401 (its warning filters apply before any Google library loads)
