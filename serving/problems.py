"""Error responses as RFC 9457 problem details (``application/problem+json``).

Every 4xx and 5xx the API sends has ``type``, ``title``, ``status`` and a ``detail`` that
says exactly what was wrong; validation problems add ``errors``, one entry per failing
field (``location``: body, query, path or header; ``field``: a dotted path with list
indices; ``message``). Responses also carry the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from feedline.stores.errors import StoreUnavailable
from serving.observability import UNAVAILABLE, current_request_id

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://feedline.example/problems/"

log = logging.getLogger(__name__)

#: Problem slugs of plain HTTP errors raised by the framework (routing, methods).
_FRAMEWORK_SLUGS = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large",
                    415: "unsupported-media-type"}


class ApiProblem(Exception):
    """Raise to answer with a problem: ``slug`` names the type, ``detail`` the specifics."""

    def __init__(self, status: int, slug: str, detail: str, *, title: str | None = None,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extra = extra


def problem_body(status: int, slug: str, title: str, detail: str,
                 **extra: Any) -> dict[str, Any]:
    """The JSON members of a problem."""
    body: dict[str, Any] = {"type": TYPE_BASE + slug, "title": title, "status": status,
                            "detail": detail}
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return body


def problem_response(status: int, slug: str, detail: str, *, title: str | None = None,
                     headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    """A ``Response`` carrying a problem."""
    body = problem_body(status, slug, title or HTTPStatus(status).phrase, detail, **extra)
    return Response(orjson.dumps(body), status_code=status, headers=dict(headers or {}),
                    media_type=PROBLEM_JSON)


def field_path(loc: Sequence[Any]) -> str:
    """``("media_ids", 0)`` -> ``media_ids[0]``; ``("a", "b")`` -> ``a.b``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    return str(error.get("msg", "invalid"))


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as ``{location, field, message}`` entries."""
    out = []
    for error in errors:
        loc = list(error.get("loc", ()))
        location = str(loc[0]) if loc else "body"
        field = field_path(loc[1:]) or location
        out.append({"location": location, "field": field, "message": _message(error)})
    return out


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> Response:
    """422 listing each failing field; 400 when the body is not JSON at all."""
    json_errors = [e for e in errors if e.get("type") == "json_invalid"]
    if json_errors:
        ctx = json_errors[0].get("ctx") or {}
        reason = ctx.get("error") or json_errors[0].get("msg", "invalid JSON")
        return problem_response(400, "malformed-json",
                                f"the request body is not valid JSON: {reason}")
    entries = validation_errors(errors)
    listed = "; ".join(f"{e['location']} {e['field']}: {e['message']}" for e in entries[:5])
    more = f" (and {len(entries) - 5} more)" if len(entries) > 5 else ""
    noun = "field is" if len(entries) == 1 else "fields are"
    return problem_response(422, "validation-error",
                            f"{len(entries)} {noun} invalid: {listed}{more}",
                            title="Request validation failed", errors=entries)


def install_handlers(app: FastAPI) -> None:
    """Answer every error the app can raise with a problem body."""

    async def on_problem(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return problem_response(exc.status, exc.slug, exc.detail, title=exc.title,
                                headers=exc.headers, **exc.extra)

    async def on_validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_problem(exc.errors())

    async def on_http(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        slug = _FRAMEWORK_SLUGS.get(exc.status_code, f"http-{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such endpoint; the API is described at /openapi.json"
        elif exc.status_code == 405:
            detail = "this endpoint does not accept that method"
        return problem_response(exc.status_code, slug, detail, headers=exc.headers)

    async def on_unavailable(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreUnavailable)
        log.warning("store unavailable: %s", exc)
        UNAVAILABLE.labels(exc.store).inc()
        return problem_response(503, "dependency-unavailable",
                                f"{exc.store} is unavailable; retry later",
                                headers={"Retry-After": str(exc.retry_after_s)},
                                dependency=exc.store)

    async def on_crash(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal-error",
                                "the server failed to handle this request; it has been logged")

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(StoreUnavailable, on_unavailable)
    app.add_exception_handler(Exception, on_crash)
