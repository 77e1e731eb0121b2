"""feedctl notifications without services: usage errors are one line and exit 2, before
any store is contacted; --help documents the exit codes; the printed lines."""

from __future__ import annotations

import pytest

from feedline.stores.notification_listing import NotificationItem, NotificationListing
from jobs.feedctl import errors
from jobs.feedctl.main import main
from jobs.feedctl.notifications import _document, _print


@pytest.mark.parametrize("argv", [
    ["notifications"],
    ["notifications", "u1", "--sample"],
    ["notifications", "not an id!"],
    ["notifications", "x" * 65],
])
def test_usage_errors_exit_2_with_one_line(argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == errors.USAGE
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("feedctl notifications: ")


@pytest.mark.parametrize("limit", ["0", "501", "ten"])
def test_a_bad_limit_is_a_usage_error(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["notifications", "u1", "--limit", limit])
    assert exited.value.code == errors.USAGE
    assert "--limit" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["notifications", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Redis first" in out and "--limit N" in out and "--json" in out


def test_lines_and_document(capsys: pytest.CaptureFixture[str]) -> None:
    listing = NotificationListing("ann", "cql", [
        NotificationItem("like:p1", "like", "p1", 5, ("bob", "cat"), 1_764_547_200_000, True),
        NotificationItem("follow:2025-12-01", "follow", None, 1, ("dan",), 1_000, False),
    ], 1, 2_000)
    _print(listing)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "notifications of ann (from cql; 1 unread):"
    assert out[1].startswith("2025-12-01T00:00:00+00:00 * like") and "bob, cat and 3 more" in out[1]
    assert " follow " in out[2] and out[2].endswith("dan") and " * " not in out[2]
    doc = _document(listing)
    assert doc["items"][0] == {"group_key": "like:p1", "type": "like", "post_id": "p1",
                               "count": 5, "actors": ["bob", "cat"],
                               "latest_ms": 1_764_547_200_000, "unread": True}
