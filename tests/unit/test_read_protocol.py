"""The read protocol's declarations: Lua scripts with documented KEYS/ARGV, set rules."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from feedline.stores.feed_cache import PageStatus
from feedline.stores.lua import source
from schemas.cql_statements import STATEMENTS
from schemas.redis_hashes import USER_COUNTER_FIELDS
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys
from schemas.redis_sets import SET_RULES, Completeness

SCRIPTS = sorted(p.name for p in resources.files("feedline.stores.lua").iterdir()
                 if p.name.endswith(".lua"))
USED = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")
DOCUMENTED = re.compile(r"^-- (KEYS|ARGV)\[(\d+)\]", re.MULTILINE)


def _own_text(name: str) -> str:
    return resources.files("feedline.stores.lua").joinpath(name).read_text(encoding="utf-8")


def _code(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def test_the_scripts_are_found() -> None:
    assert {"page.lua", "repair.lua", "repair_outbox.lua", "rate_limit.lua"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_fixed_key_and_argument_a_script_uses_is_documented(name: str) -> None:
    text = _own_text(name)
    used = set(USED.findall(_code(text)))
    documented = set(DOCUMENTED.findall(text))
    assert used <= documented, sorted(used - documented)


def test_a_required_script_comes_first_once() -> None:
    page = source("page.lua")
    assert page.startswith(_own_text("rate_check.lua"))
    assert page.count("local function rate_check(") == 1
    assert page.endswith(_own_text("page.lua"))


def test_every_status_the_page_script_returns_is_a_page_status() -> None:
    returned = set(re.findall(r"return \{'(\w+)'", _code(_own_text("page.lua"))))
    walked = set(re.findall(r"'(end|more|continue|deep)'", _code(_own_text("page.lua"))))
    assert returned | walked == {s.value for s in PageStatus}


def test_each_set_rule_is_usable_as_declared() -> None:
    keys = RedisKeys("t")
    assert SET_RULES["timeline"].key(keys, "u1") == keys.timeline("u1")
    assert SET_RULES["outbox"].key(keys, "a1") == keys.outbox("a1")
    assert SET_RULES["followed_celebrities"].key(keys, "u1") == keys.followed_celebrities("u1")
    for rule in SET_RULES.values():
        assert rule.listing is None or rule.listing in STATEMENTS
        if rule.completeness is Completeness.COUNTED:
            assert rule.counter_field in USER_COUNTER_FIELDS
        if rule.completeness is Completeness.MARKED:
            assert rule.marker == COMPLETE_MEMBER
        if rule.completeness is Completeness.CAPPED:
            assert rule.capped


def test_a_script_may_require_several_files_in_order() -> None:
    head = source("page_head.lua")
    # Required files bring their own requirements first (window.lua needs byte_order.lua).
    assert head == _own_text("rate_check.lua") + _own_text("byte_order.lua") + _own_text(
        "window.lua") + _own_text("page_head.lua")
    assert source("page_outbox.lua").startswith(_own_text("byte_order.lua")
                                                + _own_text("window.lua"))
    for name in ("page.lua", "notification_page.lua"):  # one byte order for every script
        assert _own_text("byte_order.lua") in source(name)
        assert "local function lt(" not in _own_text(name)


def test_the_cluster_page_steps_answer_page_statuses_and_window_shapes() -> None:
    from typing import get_args

    from feedline.stores.page_walk import Shape

    head = _code(_own_text("page_head.lua"))
    assert set(re.findall(r"return \{'(\w+)'", head)) - {"window"} <= {
        s.value for s in PageStatus}
    for name in ("page_head.lua", "page_outbox.lua"):
        shapes = set(re.findall(r"shape = '(\w+)'", _code(_own_text(name))))
        assert shapes == set(get_args(Shape))
