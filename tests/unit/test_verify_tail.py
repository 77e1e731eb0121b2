"""Who a live verify skips: the users the events past the archive may have changed
(`feedline.rebuild.tail`), and the scheduled verifier's rounds (`jobs.verifier`)."""

from __future__ import annotations

import json
from typing import Any

from feedline.rebuild.direct import ArchiveIndex
from feedline.rebuild.tail import touched_users
from feedline.rules.keys import Job, record_keys
from feedline.settings import BatchSettings
from jobs import verifier
from jobs.verifying import Report, UserCheck
from schemas.event_contracts import encode_event, new_event

MEDIA = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://feedline-media/m1"}]


def record(event_type: str, **fields: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(encode_event(new_event(event_type, **fields)))
    return decoded


def post(author: str, post_id: str, caption: str = "") -> dict[str, Any]:
    return record("post_created", author_id=author, post_id=post_id, caption=caption,
                  media=MEDIA)


def follow(follower: str, followee: str, kind: str = "follow") -> dict[str, Any]:
    return record(kind, follower_id=follower, followee_id=followee)


def index_of(*archived: tuple[str, dict[str, Any]]) -> ArchiveIndex:
    """An index as `load_index` builds it from archived (role, record) pairs."""
    index = ArchiveIndex(None, None)
    for role, rec in archived:
        for key in record_keys(rec, Job.FANOUT):
            index.records.setdefault(key, []).append((role, json.dumps(rec).encode()))
    return index


ARCHIVE = index_of(("follows", follow("fan1", "ann")), ("follows", follow("fan2", "ann")),
                   ("follows", follow("ex", "ann", "unfollow")),
                   ("follows", follow("fan3", "bob")), ("uploads", post("ann", "p1")),
                   ("uploads", post("bob", "p2")))


def test_a_post_touches_its_author_and_everyone_who_ever_followed_them() -> None:
    tail = [post("ann", "p9"), follow("late", "ann")]
    assert touched_users(tail, ARCHIVE, {}) == {"ann", "fan1", "fan2", "ex", "late"}


def test_a_follow_touches_both_ends_and_the_followees_followers() -> None:
    # A follow can make bob a celebrity, which moves his posts out of fan3's timeline.
    assert touched_users([follow("new", "bob")], ARCHIVE, {}) == {"new", "bob", "fan3"}
    assert touched_users([follow("new", "cat", "unfollow")], ARCHIVE, {}) == {"new", "cat"}


def test_engagements_touch_the_actor_the_author_and_every_mention_of_the_post() -> None:
    like = record("like", user_id="liker", post_id="p2", post_author_id="bob")
    archived_mentions = {"p2": {"mentioned_in_a_comment"}, "p1": {"elsewhere"}}
    assert touched_users([like], ARCHIVE, archived_mentions) == {
        "liker", "bob", "mentioned_in_a_comment"}
    comment = record("comment", user_id="c", post_id="p7", comment_id="c1",
                     text="hi @dora and @eli", post_author_id="fay")
    deletion = record("post_deleted", author_id="fay", post_id="p7")
    # The deletion drops the tail comment's mention groups too.
    assert touched_users([comment], ARCHIVE, {}) == {"c", "fay", "dora", "eli"}
    assert touched_users([deletion, comment], ARCHIVE, {}) == {"c", "fay", "dora", "eli"}
    assert touched_users([post("gil", "p8", "with @hal")], ARCHIVE, {}) == {"gil", "hal"}


def test_an_empty_tail_touches_nobody_and_junk_is_ignored() -> None:
    assert touched_users([], ARCHIVE, {"p1": {"x"}}) == set()
    assert touched_users([{"event_type": "follow", "follower_id": 7}], ARCHIVE, {}) == set()


# --- the scheduled verifier ---------------------------------------------------------------

SETTINGS = BatchSettings()


class Rounds:
    """`jobs.verifying.check` answering from a script: one report per call."""

    def __init__(self, *reports: Report | Exception) -> None:
        self.reports = list(reports)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, settings: BatchSettings, **kwargs: Any) -> Report:
        self.calls.append(kwargs)
        answer = self.reports.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def report(ok: list[str], drifted: list[str], skipped: list[str] | None = None) -> Report:
    rows = [UserCheck(u, [], 3, 1) for u in ok] + [UserCheck(u, ["cql counters"], 3, 1)
                                                   for u in drifted]
    return Report(gate="passed", users=rows, skipped=skipped or [], tail_records=5)


def gauge(state: str) -> float:
    value: float = verifier.USERS.labels(state)._value.get()
    return value


def runs(result: str) -> float:
    value: float = verifier.RUNS.labels(result)._value.get()
    return value


def test_drift_counts_only_when_the_second_look_confirms_it() -> None:
    waits: list[float] = []
    check = Rounds(report(["a", "b"], ["c", "d"], ["e"]), report(["c"], ["d"]))
    before = runs("drift")
    assert verifier.one_round(SETTINGS, sample=5, confirm_after_s=30, wait=waits.append,
                              run=check) == "drift"
    assert waits == [30]
    assert check.calls[0] == {"sample": 5, "live": True, "gate": False,
                              "progress": verifier.log.info}
    assert check.calls[1]["users"] == ["c", "d"] and check.calls[1]["live"] is True
    assert (gauge("checked"), gauge("skipped"), gauge("drifted")) == (4, 1, 1)
    assert runs("drift") == before + 1


def test_drift_that_goes_away_is_not_reported() -> None:
    check = Rounds(report(["a"], ["c"]), report([], [], ["c"]))  # c moved on: skipped
    assert verifier.one_round(SETTINGS, sample=2, confirm_after_s=0, wait=lambda _s: None,
                              run=check) == "ok"
    assert gauge("drifted") == 0


def test_a_round_that_could_not_check_keeps_the_last_checked_time() -> None:
    verifier.LAST_CHECKED.set(123.0)
    check = Rounds(ConnectionError("redis down"))
    assert verifier.one_round(SETTINGS, sample=2, confirm_after_s=0, wait=lambda _s: None,
                              run=check) == "unchecked"
    assert verifier.LAST_CHECKED._value.get() == 123.0
    everyone_skipped = Rounds(report([], [], ["a", "b"]))
    assert verifier.one_round(SETTINGS, sample=2, confirm_after_s=0, wait=lambda _s: None,
                              run=everyone_skipped) == "ok"
    assert verifier.LAST_CHECKED._value.get() == 123.0  # nobody compared
    assert verifier.one_round(SETTINGS, sample=2, confirm_after_s=0, wait=lambda _s: None,
                              run=Rounds(report(["a"], []))) == "ok"
    assert verifier.LAST_CHECKED._value.get() > 123.0
    # Rounds run without the quality gate (it reads the whole archive each time).
    rounds = Rounds(report(["a"], []))
    verifier.one_round(SETTINGS, sample=2, confirm_after_s=0, wait=lambda _s: None, run=rounds)
    assert [call["gate"] for call in rounds.calls] == [False]
