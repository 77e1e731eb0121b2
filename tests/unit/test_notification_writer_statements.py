"""The CQL statements of each notification effect: a moved group leaves its old row, a
group in place is overwritten, a delete removes the row where the group sat."""

from __future__ import annotations

import pytest

from feedline.rules.effects import NotificationDelete, NotificationUpsert, PostCountersSet
from feedline.stores.notification_writer import NotificationWriter
from schemas.cql_statements import ms_to_dt


def upsert(latest: int, previous: int | None) -> NotificationUpsert:
    return NotificationUpsert("ann", "like:p1", "like", "p1", 2, ("bob", "cat"), latest,
                              previous, latest, "e1", 3)


def test_a_new_group_is_one_row() -> None:
    assert NotificationWriter.statements(upsert(5_000, None)) == [
        ("notification_group_add",
         ("ann", ms_to_dt(5_000), "like:p1", "like", "p1", 2, ["bob", "cat"]))]


def test_a_moved_group_removes_its_old_row_first() -> None:
    names = [(n, v[1]) for n, v in NotificationWriter.statements(upsert(7_000, 5_000))]
    assert names == [("notification_group_remove", ms_to_dt(5_000)),
                     ("notification_group_add", ms_to_dt(7_000))]


def test_a_group_in_place_is_overwritten() -> None:
    assert [n for n, _ in NotificationWriter.statements(upsert(5_000, 5_000))] == [
        "notification_group_add"]


def test_a_delete_removes_the_row_where_the_group_sat() -> None:
    delete = NotificationDelete("ann", "comment:p1", 4_000, 9_000, "e2", 4)
    assert NotificationWriter.statements(delete) == [
        ("notification_group_remove", ("ann", ms_to_dt(4_000), "comment:p1"))]


def test_other_effects_are_a_mistake() -> None:
    with pytest.raises(TypeError):
        NotificationWriter.statements(PostCountersSet("p1", 1, 0))  # type: ignore[arg-type]
