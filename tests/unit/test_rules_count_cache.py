"""The rules keep follower and user counts up to date instead of recounting per event:
after every event of random sequences the kept counts equal a full recount, and a state
unpickled without the kept count (pickled before it existed) recounts once."""

from __future__ import annotations

import pickle
import random

from feedline.rules.counters import UserCounterState, apply_user_event
from feedline.rules.fanout import AuthorState, RulesConfig, apply_follow_change


def test_user_counts_follow_every_event() -> None:
    rng = random.Random(3)
    state = UserCounterState("u")
    for n in range(3000):
        relation = rng.choice(["followed_by", "follows", "post"])
        apply_user_event(state, relation=relation, other_id=f"o{rng.randrange(40)}",
                         version=(rng.randrange(500), f"e{n}"), positive=rng.random() < 0.6)
        assert state.counts() == state.recount()
    assert any(state.counts().values())


def test_author_follower_count_follows_every_event() -> None:
    rng = random.Random(5)
    config = RulesConfig(celebrity_threshold=20, follow_merge_limit=3, timeline_cap=5)
    state = AuthorState("a")
    crossed = 0
    for n in range(3000):
        before = state.celebrity
        apply_follow_change(state, follower_id=f"f{rng.randrange(40)}",
                            version=(rng.randrange(500), f"e{n}"),
                            follow=rng.random() < 0.6, config=config)
        crossed += before != state.celebrity
        assert state.follower_count() == sum(1 for e in state.edges.values() if e.following)
    assert crossed, "the sequence never crossed the celebrity threshold"


def test_states_pickled_without_the_kept_count_recount() -> None:
    state = UserCounterState("u")
    apply_user_event(state, relation="followed_by", other_id="x", version=(1, "e1"),
                     positive=True)
    old = pickle.loads(pickle.dumps(state))
    del old.__dict__["_tally"]  # what a state pickled by the previous code looks like
    assert old.counts() == {"followers": 1, "following": 0, "posts": 0}
    author = AuthorState("a")
    apply_follow_change(author, follower_id="f", version=(1, "e1"), follow=True,
                        config=RulesConfig())
    old_author = pickle.loads(pickle.dumps(author))
    del old_author.__dict__["_followers"]
    assert old_author.follower_count() == 1
