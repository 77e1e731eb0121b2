"""feedctl — operate feedline: the local stack, the CQL schema, pipeline jobs.

Exit codes: 0 success; 1 the operation failed or something is unhealthy; 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jobs.feedctl import (
    archive,
    backfill,
    db,
    dlq,
    feed,
    jobs,
    load,
    local,
    quality,
    rebuild,
    token,
    verify,
)

NOUNS = (local, db, jobs, load, feed, token, archive, quality, dlq, rebuild, backfill, verify)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-command per noun module."""
    parser = argparse.ArgumentParser(
        prog="feedctl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    nouns = parser.add_subparsers(dest="noun", metavar="NOUN", required=True)
    for noun in NOUNS:
        noun.register(nouns)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `feedctl` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
