# PYTHON_ARGCOMPLETE_OK
"""feedctl — operate feedline: the local stack, the CQL schema, pipeline jobs.

Every error is one line on stderr, `feedctl NOUN VERB: what failed; what to do`, and
its kind is the exit code (below). Long work shows a progress bar on stderr when it is a
terminal; `--json` on `jobs list`, `local status`, `verify`, `dlq inspect`, `notifications` and
`archive status` prints one JSON document on stdout instead of the table, with the same
exit codes. Shell completion: `eval "$(register-python-argcomplete feedctl)"`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from feedline.settings import SettingsError
from jobs.feedctl import (
    archive,
    backfill,
    db,
    dlq,
    feed,
    jobs,
    load,
    local,
    media,
    notifications,
    quality,
    rebuild,
    token,
    verify,
)
from jobs.feedctl.deps import translate
from jobs.feedctl.errors import EXIT_CODES, FAILED, INTERNAL, INTERRUPTED, USAGE, one_line

NOUNS = (local, db, jobs, load, feed, notifications, token, archive, quality, dlq, rebuild,
         backfill, verify, media)

#: Client libraries whose retry warnings would repeat what the one error line says.
CHATTY_LOGGERS = ("kafka", "cassandra", "google", "urllib3")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-command per noun module."""
    parser = argparse.ArgumentParser(
        prog="feedctl",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", "--traceback", action="store_true", dest="debug",
                        help="on an error, also print the traceback and the client "
                        "libraries' log warnings")
    nouns = parser.add_subparsers(dest="noun", metavar="NOUN", required=True)
    for noun in NOUNS:
        noun.register(nouns)
    return parser


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer a shell completion request (argcomplete) and exit; a no-op otherwise."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    argcomplete.autocomplete(parser)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture it)
        pass


def _program(args: argparse.Namespace) -> str:
    words = ["feedctl", getattr(args, "noun", None), getattr(args, "verb", None)]
    return " ".join(w for w in words if isinstance(w, str))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `feedctl` console script."""
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(argv)
    program = _program(args)
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    if not args.debug:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except SettingsError as error:
        print(f"feedctl: {one_line(error, 1000)}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:  # the reader left (`feedctl ... | head`): nothing to report
        _silence_stdout()
        return FAILED
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        known = translate(error)
        if known is not None:
            print(f"{program}: {one_line(known, 1000)}", file=sys.stderr)
            return known.exit_code
        print(f"{program}: internal error: {type(error).__name__}: {one_line(error)}"
              + ("" if args.debug else " (rerun with `feedctl --debug ...` for the traceback)"),
              file=sys.stderr)
        return INTERNAL
    finally:
        for name, level in levels.items():  # main() also runs inside tests
            logging.getLogger(name).setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
