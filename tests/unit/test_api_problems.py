from __future__ import annotations

import json

from serving.problems import (
    PROBLEM_JSON,
    field_path,
    problem_body,
    problem_response,
    validation_errors,
    validation_problem,
)


def test_field_paths_name_list_indices() -> None:
    assert field_path(("media_ids", 3)) == "media_ids[3]"
    assert field_path(("a", "b", 0, "c")) == "a.b[0].c"
    assert field_path(()) == ""


def test_problem_body_has_the_rfc_9457_members() -> None:
    body = problem_body(404, "post-not-found", "Not Found", "post p1 does not exist", post="p1")
    assert body == {"type": "https://feedline.example/problems/post-not-found",
                    "title": "Not Found", "status": 404, "detail": "post p1 does not exist",
                    "post": "p1"}


def test_problem_response_media_type_and_headers() -> None:
    response = problem_response(429, "rate-limited", "slow down", headers={"Retry-After": "7"})
    assert response.status_code == 429
    assert response.media_type == PROBLEM_JSON
    assert response.headers["retry-after"] == "7"
    assert json.loads(response.body)["status"] == 429


def test_validation_problem_lists_every_field() -> None:
    errors = [
        {"type": "string_too_long", "loc": ("body", "caption"),
         "msg": "String should have at most 2200 characters"},
        {"type": "extra_forbidden", "loc": ("body", "colour"), "msg": "Extra inputs..."},
        {"type": "missing", "loc": ("body", "media_ids"), "msg": "Field required"},
        {"type": "string_pattern_mismatch", "loc": ("body", "media_ids", 1), "msg": "bad"},
    ]
    response = validation_problem(errors)
    body = json.loads(response.body)
    assert response.status_code == 422
    assert body["errors"] == [
        {"location": "body", "field": "caption",
         "message": "String should have at most 2200 characters"},
        {"location": "body", "field": "colour", "message": "unknown field"},
        {"location": "body", "field": "media_ids", "message": "required"},
        {"location": "body", "field": "media_ids[1]", "message": "bad"},
    ]
    assert body["detail"].startswith("4 fields are invalid: body caption: String should")


def test_malformed_json_is_a_400_not_a_422() -> None:
    response = validation_problem([{"type": "json_invalid", "loc": ("body", 1),
                                    "msg": "JSON decode error",
                                    "ctx": {"error": "Expecting value"}}])
    assert response.status_code == 400
    assert json.loads(response.body)["detail"] == \
        "the request body is not valid JSON: Expecting value"


def test_errors_without_location_default_to_body() -> None:
    assert validation_errors([{"type": "x", "loc": (), "msg": "m"}]) == \
        [{"location": "body", "field": "body", "message": "m"}]
