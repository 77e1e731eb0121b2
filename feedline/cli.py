"""Argument types shared by the command-line tools and the batch jobs."""

from __future__ import annotations

import argparse
from datetime import datetime


def iso_time(text: str) -> datetime:
    """An ISO-8601 instant with a timezone (``2026-11-01T00:00:00Z``), as an argparse type."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone; add Z or +00:00")
    return moment
