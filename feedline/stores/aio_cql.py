"""Await CQL statements from asyncio code without blocking the event loop.

The driver runs requests on its own I/O thread and reports through callbacks; this turns
a ``ResponseFuture`` into an awaitable, following every page of the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from cassandra import (
    CoordinationFailure,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
)
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException

from feedline.stores.errors import StoreUnavailable

#: Driver errors meaning "the CQL store cannot answer now" (not a bad statement).
UNAVAILABLE = (
    NoHostAvailable,
    OperationTimedOut,
    ReadTimeout,
    WriteTimeout,
    Unavailable,
    CoordinationFailure,
    ConnectionException,
)


def unavailable(error: BaseException) -> BaseException:
    """``error`` as ``StoreUnavailable`` when it says the store is down or slow."""
    if isinstance(error, UNAVAILABLE):
        return StoreUnavailable("cql", f"{type(error).__name__}: {error}")
    return error


async def execute(
    session: Any, statement: Any, params: Sequence[Any] = (), *, timeout_s: float
) -> list[Any]:
    """Run one prepared statement; returns every row (all pages).

    Raises ``StoreUnavailable`` when the store is unreachable or the request timed out.
    """
    if session is None:
        raise StoreUnavailable("cql", "not connected")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    rows: list[Any] = []
    try:
        response = session.execute_async(statement, tuple(params), timeout=timeout_s)
    except UNAVAILABLE as error:
        raise unavailable(error) from error

    def settle(result: list[Any] | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(unavailable(error))
        else:
            done.set_result(result or [])

    def report(result: list[Any] | None, error: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop closed while the request was in flight
            pass

    def on_page(page: Any) -> None:
        rows.extend(page or ())
        if response.has_more_pages:
            response.start_fetching_next_page()
        else:
            report(rows, None)

    def on_error(error: BaseException) -> None:
        report(None, error)

    response.add_callbacks(on_page, on_error)
    return await done

