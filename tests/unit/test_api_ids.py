from __future__ import annotations

import re

from serving.ids import (
    id_key,
    minted_comment_of,
    minted_post_of,
    new_comment_id,
    new_media_id,
    new_post_id,
)

KEY = id_key("unit-test-secret-unit-test-secret-0123")
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_minted_ids_fit_the_event_schemas_and_are_unique() -> None:
    made = [new_post_id(KEY, "u1") for _ in range(200)] + [new_media_id() for _ in range(200)]
    made += [new_comment_id(KEY, "u1", "p1") for _ in range(200)]
    assert all(ID.match(i) for i in made)
    assert len(set(made)) == len(made)


def test_post_ids_certify_their_author_only() -> None:
    post_id = new_post_id(KEY, "alice")
    assert minted_post_of(KEY, post_id, "alice")
    assert not minted_post_of(KEY, post_id, "bob")
    assert not minted_post_of(id_key("other-secret-other-secret-other-s"), post_id, "alice")
    assert not minted_post_of(KEY, post_id[:-1] + ("0" if post_id[-1] != "0" else "1"), "alice")
    assert not minted_post_of(KEY, "p123", "alice")  # not minted here at all


def test_comment_ids_certify_author_and_post() -> None:
    comment_id = new_comment_id(KEY, "alice", "p1")
    assert minted_comment_of(KEY, comment_id, "alice", "p1")
    assert not minted_comment_of(KEY, comment_id, "bob", "p1")
    assert not minted_comment_of(KEY, comment_id, "alice", "p2")
    assert not minted_comment_of(KEY, new_post_id(KEY, "alice"), "alice", "p1")
