"""Unit tests of schemas/compat.py: version-to-version compatibility of the event schemas."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from schemas import compat
from schemas.compat import check_backward_compatible, check_repository
from schemas.event_contracts import SCHEMA_DIR, load_schema


def next_version(event_type: str) -> dict[str, Any]:
    """The v1 schema of ``event_type`` relabelled as an unchanged v2."""
    schema = load_schema(event_type, 1)
    schema["$id"] = schema["$id"].replace(".v1.json", ".v2.json")
    schema["title"] = schema["title"].replace("version 1", "version 2")
    schema["properties"]["schema_version"]["const"] = 2
    return schema


@pytest.fixture
def like_v1() -> dict[str, Any]:
    return load_schema("like", 1)


@pytest.fixture
def like_v2() -> dict[str, Any]:
    return next_version("like")


@pytest.fixture
def post_v1() -> dict[str, Any]:
    return load_schema("post_created", 1)


@pytest.fixture
def post_v2() -> dict[str, Any]:
    return next_version("post_created")


def only_problem(old: dict[str, Any], new: dict[str, Any]) -> str:
    problems = check_backward_compatible(old, new)
    assert len(problems) == 1, problems
    return problems[0]


def test_unchanged_next_version_is_compatible(like_v1: dict, like_v2: dict) -> None:
    assert check_backward_compatible(like_v1, like_v2) == []


def test_adding_an_optional_property_is_compatible(like_v1: dict, like_v2: dict) -> None:
    like_v2["properties"]["source"] = {"description": "Where it came from.", "type": "string"}
    like_v2["properties"]["post_id"]["description"] = "Reworded descriptions do not matter."
    assert check_backward_compatible(like_v1, like_v2) == []


def test_removing_a_required_property_fails(like_v1: dict, like_v2: dict) -> None:
    del like_v2["properties"]["user_id"]
    like_v2["required"].remove("user_id")
    assert only_problem(like_v1, like_v2) == "$.user_id: required property removed"


def test_removing_an_optional_property_of_a_closed_object_fails(
    like_v1: dict, like_v2: dict
) -> None:
    del like_v2["properties"]["post_author_id"]
    assert "$.post_author_id: optional property removed" in only_problem(like_v1, like_v2)


def test_retyping_a_required_property_fails(like_v1: dict, like_v2: dict) -> None:
    like_v2["properties"]["user_id"] = {"description": "Now a number.", "type": "integer"}
    problems = check_backward_compatible(like_v1, like_v2)
    assert '$.user_id: type changed from "string" to "integer"' in problems


def test_widening_a_type_is_compatible(like_v1: dict, like_v2: dict) -> None:
    like_v2["properties"]["post_author_id"]["type"] = ["string", "null"]
    assert check_backward_compatible(like_v1, like_v2) == []


def test_making_an_optional_property_required_fails(like_v1: dict, like_v2: dict) -> None:
    like_v2["required"].append("post_author_id")
    assert only_problem(like_v1, like_v2) == "$.post_author_id: optional property made required"


def test_adding_a_required_property_fails(like_v1: dict, like_v2: dict) -> None:
    like_v2["properties"]["device"] = {"description": "Client device.", "type": "string"}
    like_v2["required"].append("device")
    assert only_problem(like_v1, like_v2) == "$.device: new required property"


def test_nested_array_items_are_compared(post_v1: dict, post_v2: dict) -> None:
    item = post_v2["properties"]["media"]["items"]
    item["properties"]["uri"]["type"] = "object"
    item["properties"]["content_type"]["enum"].remove("image/heic")
    item["required"].append("width")
    item["properties"]["width"] = {"description": "Pixels.", "type": "integer"}
    problems = check_backward_compatible(post_v1, post_v2)
    assert len(problems) == 3, problems
    assert any(p.startswith("$.media[*].uri: type changed") for p in problems)
    assert any(
        p.startswith("$.media[*].content_type: enum narrowed") and "image/heic" in p
        for p in problems
    )
    assert "$.media[*].width: new required property" in problems


def test_widening_an_enum_and_loosening_bounds_is_compatible(post_v1: dict, post_v2: dict) -> None:
    post_v2["properties"]["media"]["items"]["properties"]["content_type"]["enum"].append(
        "image/avif"
    )
    post_v2["properties"]["media"]["maxItems"] = 20
    post_v2["properties"]["caption"]["maxLength"] = 5000
    post_v2["properties"]["media"]["items"]["properties"]["uri"].pop("format")
    assert check_backward_compatible(post_v1, post_v2) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda s: s["properties"]["caption"].update(maxLength=100),
            "$.caption: maxLength tightened",
        ),
        (lambda s: s["properties"]["media"].update(minItems=2), "$.media: minItems tightened"),
        (
            lambda s: s["properties"]["event_time"].update(format="date"),
            "$.event_time: format changed",
        ),
        (
            lambda s: s["properties"]["post_id"].update(pattern="^[0-9]+$"),
            "$.post_id: pattern changed",
        ),
        (lambda s: s["properties"]["media"].update(uniqueItems=True), "$.media: uniqueItems added"),
        (lambda s: s.update({"x-topic": "engagements"}), "$: x-topic changed"),
        (lambda s: s.update({"x-key": "post_id"}), "$: x-key changed"),
        (lambda s: s["properties"]["media"]["items"].pop("additionalProperties"), None),
        (lambda s: s["properties"]["media"].update(items=False), "$.media[*]: schema changed"),
        (
            lambda s: s["properties"]["event_type"].update(const="post_made"),
            "$.event_type: const changed",
        ),
    ],
)
def test_narrowing_changes_fail(
    post_v1: dict, post_v2: dict, change: Any, expected: str | None
) -> None:
    change(post_v2)
    problems = check_backward_compatible(post_v1, post_v2)
    if expected is None:  # opening a closed object accepts more: fine
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_closing_an_open_object_fails(post_v1: dict, post_v2: dict) -> None:
    post_v1["properties"]["media"]["items"].pop("additionalProperties")
    assert only_problem(post_v1, post_v2).startswith("$.media[*]: additionalProperties changed")


def test_schema_version_must_grow(like_v1: dict) -> None:
    assert only_problem(like_v1, copy.deepcopy(like_v1)).startswith(
        "$.schema_version: const must grow"
    )


def test_the_repository_is_consistent_and_compatible() -> None:
    assert check_repository() == []
    assert compat.main([]) == 0


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    for path in SCHEMA_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def write(folder: Path, name: str, schema: dict[str, Any]) -> None:
    (folder / name).write_text(json.dumps(schema, indent=2))


def test_check_repository_accepts_a_compatible_new_version(schema_dir: Path) -> None:
    schema = next_version("comment")
    schema["properties"]["language"] = {"description": "BCP 47 tag.", "type": "string"}
    write(schema_dir, "comment.v2.json", schema)
    assert check_repository(schema_dir) == []


def test_check_repository_reports_an_incompatible_new_version(
    schema_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = next_version("comment")
    schema["required"].append("post_author_id")
    write(schema_dir, "comment.v2.json", schema)
    expected = "comment v1 -> v2: $.post_author_id: optional property made required"
    assert check_repository(schema_dir) == [expected]
    assert compat.main(["--dir", str(schema_dir)]) == 1
    assert expected in capsys.readouterr().out


def test_check_repository_lints_files(schema_dir: Path) -> None:
    schema = next_version("like")
    schema["x-key"] = "user_id"
    schema["properties"]["event_type"]["const"] = "liked"
    del schema["properties"]["user_id"]["description"]
    write(schema_dir, "like.v3.json", schema)  # also leaves a gap: there is no v2
    (schema_dir / "unfollow.v1.json").unlink()
    (schema_dir / "notes.json").write_text("{}")
    problems = check_repository(schema_dir)
    assert any(p.startswith("like.v3.json: x-key is wrong") for p in problems), problems
    assert any(p.startswith("like.v3.json: event_type const is wrong") for p in problems)
    assert any(p.startswith("like.v3.json: $id is wrong") for p in problems)
    assert any(p.startswith("like.v3.json: schema_version const is wrong") for p in problems)
    assert "like.v3.json: $.user_id has no description" in problems
    assert "like: versions [1, 3] do not run 1..N without gaps" in problems
    assert "unfollow: declared in EVENT_TYPES but has no schema file" in problems
    assert any(p.startswith("notes.json: not named") for p in problems)


def test_main_compares_two_files(tmp_path: Path, like_v1: dict, like_v2: dict) -> None:
    write(tmp_path, "old.json", like_v1)
    write(tmp_path, "new.json", like_v2)
    assert compat.main([str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    like_v2["required"].append("post_author_id")
    write(tmp_path, "new.json", like_v2)
    assert compat.main([str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 1
