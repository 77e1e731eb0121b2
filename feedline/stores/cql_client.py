"""A CQL session for asyncio services: connected lazily, statements prepared once.

An API process must start (and report itself unready) while the CQL store is down, and
recover when it comes back. ``CqlClient`` connects on first use, in a worker thread, and
after a failed attempt refuses for ``retry_every_s`` instead of stalling every request on
a connect timeout. Statements are prepared on first use and cached by their text.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from feedline.settings import CqlSettings
from feedline.stores.aio_cql import UNAVAILABLE, execute
from feedline.stores.cql import connect
from feedline.stores.errors import StoreUnavailable


class CqlClient:
    """One cluster connection on one keyspace."""

    def __init__(
        self,
        settings: CqlSettings,
        *,
        timeout_s: float,
        retry_every_s: float = 2.0,
        connector: Callable[..., tuple[Any, Any]] = connect,
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.retry_every_s = retry_every_s
        self._connector = connector
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._session: Any = None
        self._failed_at: float | None = None
        self._failure = ""
        self._prepared: dict[str, Any] = {}

    def _connect_blocking(self) -> Any:
        with self._lock:
            if self._session is not None:
                return self._session
            if self._failed_at is not None and (
                    time.monotonic() - self._failed_at < self.retry_every_s):
                raise StoreUnavailable("cql", f"not connected: {self._failure}")
            try:
                self._cluster, self._session = self._connector(
                    self.settings, keyspace=self.settings.keyspace,
                    timeout_s=min(self.timeout_s, 5.0))
            except (*UNAVAILABLE, OSError) as error:
                self._failed_at, self._failure = time.monotonic(), f"{type(error).__name__}"
                raise StoreUnavailable("cql", f"cannot connect: {error}") from error
            self._failed_at = None
            return self._session

    def _prepare_blocking(self, cql: str) -> Any:
        session = self._connect_blocking()
        try:
            return session.prepare(cql)
        except UNAVAILABLE as error:
            raise StoreUnavailable("cql", f"cannot prepare: {error}") from error

    async def statement(self, cql: str) -> tuple[Any, Any]:
        """The session and the prepared form of ``cql`` (connecting/preparing if needed)."""
        prepared = self._prepared.get(cql)
        if prepared is None or self._session is None:
            prepared = await asyncio.to_thread(self._prepare_blocking, cql)
            self._prepared[cql] = prepared
        return self._session, prepared

    async def execute(self, cql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one prepared statement; ``StoreUnavailable`` when the store is down."""
        session, prepared = await self.statement(cql)
        return await execute(session, prepared, params, timeout_s=self.timeout_s)

    async def execute_many(self, requests: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Rows of each statement, run concurrently, in request order."""
        return list(await asyncio.gather(*(self.execute(cql, params)
                                           for cql, params in requests)))

    def close(self) -> None:
        """Shut the cluster connection down."""
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
            self._cluster = self._session = None
            self._prepared.clear()
