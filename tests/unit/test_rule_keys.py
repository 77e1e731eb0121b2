"""Rule keys: every engine routes an event to the same keys, and an unknown type fails."""

from __future__ import annotations

import json
import pickle

import pytest

from feedline.rebuild.image import derive_image
from feedline.rules import keys
from feedline.rules.engine import RulesEngine
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import (
    Job,
    KeyKind,
    RuleKey,
    UnknownEventType,
    new_state,
    record_keys,
    rule_keys,
)
from feedline.workload import Workload, WorkloadSpec
from pipelines.batch.transforms import counter_route, fanout_route, route_records
from pipelines.streaming.parse import parse_or_dead_letter
from schemas.event_contracts import EVENT_TYPES, encode_event, new_event

SPEC = WorkloadSpec(users=40, posts=30, mean_followers=5, max_followers=12,
                    likes_per_post=2, comments_per_post=1, post_delete_share=0.1,
                    unfollow_share=0.1, seed=3)
MEDIA = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://feedline-media/m1"}]


def test_every_event_type_of_the_schemas_has_its_keys() -> None:
    known = {t for types in EVENT_TYPES.values() for t in types}
    assert set(keys.ROUTES) == known
    for role in ("uploads", "follows"):  # the fan-out job keys these by one author
        for event_type in EVENT_TYPES[role]:
            fanout = [kind for kind, _ in keys.ROUTES[event_type] if kind is KeyKind.AUTHOR]
            assert len(fanout) == 1, event_type


def test_key_text_is_what_the_jobs_key_by_and_parses_back() -> None:
    cases = [(RuleKey.author("a1"), "a1"), (RuleKey(KeyKind.POST, "p1"), "post:p1"),
             (RuleKey.user("u1"), "user:u1")]
    for key, text in cases:
        assert key.text == str(key) == text
        assert RuleKey.parse(text, key.job) == key
        assert type(new_state(key)).__name__ == {
            KeyKind.AUTHOR: "AuthorState", KeyKind.POST: "PostEngagementState",
            KeyKind.USER: "UserCounterState"}[key.kind]
    with pytest.raises(ValueError, match="not a counters key"):
        RuleKey.parse("a1", Job.COUNTERS)


def test_raw_records_and_parsed_events_route_to_the_same_keys() -> None:
    for produced in Workload(SPEC).events():
        event = produced.event
        record = json.loads(encode_event(event))
        assert record_keys(record) == rule_keys(event)
        assert fanout_route(record) == [k.text for k in rule_keys(event, Job.FANOUT)]
        assert counter_route(record) == [k.text for k in rule_keys(event, Job.COUNTERS)]
    follow = new_event("follow", follower_id="f", followee_id="a")
    assert rule_keys(follow) == (RuleKey.author("a"), RuleKey.user("a"), RuleKey.user("f"))


def test_an_unknown_event_type_fails_in_every_engine(monkeypatch) -> None:
    like = new_event("like", user_id="u", post_id="p", post_author_id="a")
    payload = encode_event(like)
    monkeypatch.delitem(keys.ROUTES, "like")

    with pytest.raises(UnknownEventType, match="no rules for event type 'like'"):
        RulesEngine(RulesConfig()).apply(like)
    with pytest.raises(UnknownEventType):
        derive_image([like], RulesConfig())
    with pytest.raises(ValueError, match="no rules for event type 'like'"):
        route_records("engagements", [payload], 4, counter_route)
    with pytest.raises(UnknownEventType, match="None"):
        record_keys({"post_id": "p"})

    # Streaming: a dead letter with its reason, not an exception (the job keeps going).
    event, letter = parse_or_dead_letter("engagements", Job.COUNTERS, "engagements", 0, 7,
                                         payload)
    assert event is None and letter is not None
    assert json.loads(letter)["reason"] == "unknown_event_type"
    assert "like" in json.loads(letter)["detail"]


def test_routing_and_states_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(UnknownEventType("poke")))
    assert error.event_type == "poke" and "poke" in str(error)
    key = pickle.loads(pickle.dumps(RuleKey.user("u1")))
    assert key == RuleKey.user("u1") and key.kind is KeyKind.USER
    post = new_event("post_created", author_id="a", post_id="p", caption="", media=MEDIA)
    event, letter = parse_or_dead_letter("uploads", Job.FANOUT, "uploads", 0, 1,
                                         encode_event(post))
    assert letter is None and event == post
