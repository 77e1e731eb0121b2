"""Async Redis clients whose broken connections always fail as Redis connection errors.

redis-py turns a failed socket write into ``redis.exceptions.ConnectionError`` only when the
event loop raises ``OSError``. When the peer resets a connection while it is being opened
or written, the loop's transport may already be torn down, and writing to it raises
something else: uvloop a ``RuntimeError`` ("unable to perform operation on <TCPTransport
closed=True ...>"), CPython 3.12+ a ``TypeError`` or ``AttributeError`` from the
transport's internals. Those escaped every "Redis is down" handler and answered 500s. The
connection class here reports them as the reset they are, so redis-py disconnects and
raises its ``ConnectionError`` as for any other reset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection

#: What a write to a transport that the loop has already closed raises, besides OSError.
TRANSPORT_GONE = (RuntimeError, TypeError, AttributeError)


class ResetSafe(AbstractConnection):
    """Writes to a torn-down transport raise ConnectionResetError (mixed into a connection)."""

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        try:
            await super()._send_packed_command(command)
        except TRANSPORT_GONE as error:
            # Only the stream writer's writelines and drain run in the call: an error of
            # these kinds there means the transport under them is gone.
            raise ConnectionResetError(f"connection lost while writing ({error})") from error


class ResetSafeConnection(ResetSafe, Connection):
    """A TCP connection (``redis://``) with `ResetSafe` writes."""


class ResetSafeSSLConnection(ResetSafe, SSLConnection):
    """A TLS connection (``rediss://``) with `ResetSafe` writes."""


#: The connection class per URL scheme (a unix socket keeps redis-py's own).
CONNECTION_CLASSES: dict[str, type[AbstractConnection]] = {
    "redis": ResetSafeConnection, "rediss": ResetSafeSSLConnection}


def reset_safe(connection_class: type[Any]) -> type[Any]:
    """The `ResetSafe` class of redis-py's ``Connection``, ``SSLConnection`` (others kept)."""
    if issubclass(connection_class, ResetSafe):
        return connection_class
    if connection_class is SSLConnection:
        return ResetSafeSSLConnection
    if connection_class is Connection:
        return ResetSafeConnection
    return connection_class


def async_redis(url: str, **options: Any) -> Redis:
    """``redis.asyncio.Redis.from_url`` on a `ResetSafe` connection class.

    ``socket_timeout`` is required: redis-py writes through `_send_packed_command` only
    when it is set.
    """
    if options.get("socket_timeout") is None:
        raise ValueError("async_redis needs a socket_timeout")
    client = Redis.from_url(url, **options)
    safe = CONNECTION_CLASSES.get(urlsplit(url).scheme)
    if safe is not None:  # set after parsing: from_url picks the class from the scheme
        client.connection_pool.connection_class = safe
    return client
