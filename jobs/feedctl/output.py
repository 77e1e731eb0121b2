"""Machine-readable output: the `--json` flag and its one JSON document on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Add `--json` (one JSON document on stdout instead of the table; same exit codes)."""
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout instead of the table "
                        "(same exit codes; errors stay one line on stderr)")


def print_json(document: Any) -> None:
    """One JSON document, one line, on stdout."""
    json.dump(document, sys.stdout, sort_keys=True, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()
