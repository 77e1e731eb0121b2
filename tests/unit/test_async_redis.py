"""A write to a connection whose transport the loop already closed is a Redis ConnectionError
(single-node and cluster clients)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.exceptions
from redis.asyncio.cluster import ClusterNode

from feedline.stores.async_redis import (
    ResetSafeConnection,
    ResetSafeSSLConnection,
    async_redis,
    reset_safe,
)
from feedline.stores.cluster_cache import cluster_client


class ClosedTransportWriter:
    """Writes fail as uvloop's do on a transport torn down by a peer reset."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.transport = self

    def writelines(self, _data: Any) -> None:
        raise self.error

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return True


@pytest.mark.parametrize("error", [
    RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler "
                 "is closed"),
    TypeError("'NoneType' object is not callable"),
    AttributeError("'NoneType' object has no attribute '_add_writer'"),
])
def test_a_write_on_a_torn_down_transport_is_a_connection_error(error: Exception) -> None:
    async def write() -> None:
        connection = ResetSafeConnection(socket_timeout=1)
        connection._reader = object()  # type: ignore[assignment]  # "connected"
        connection._writer = ClosedTransportWriter(error)  # type: ignore[assignment]
        await connection.send_packed_command(b"PING\r\n", check_health=False)

    with pytest.raises(redis.exceptions.ConnectionError):
        asyncio.run(write())


def test_clients_use_the_reset_safe_connections_and_need_a_socket_timeout() -> None:
    plain = async_redis("redis://127.0.0.1:1/0", socket_timeout=1)
    tls = async_redis("rediss://127.0.0.1:1/0", socket_timeout=1)
    assert plain.connection_pool.connection_class is ResetSafeConnection
    assert tls.connection_pool.connection_class is ResetSafeSSLConnection
    with pytest.raises(ValueError, match="socket_timeout"):
        async_redis("redis://127.0.0.1:1/0")


def test_a_write_whose_writer_a_concurrent_disconnect_took_is_a_connection_error() -> None:
    """The cluster client's race: another request's connection error closed every node's
    connections (``RedisCluster.aclose``) between this one's connect and its first write."""
    async def write() -> None:
        connection = ResetSafeConnection(socket_timeout=1)
        await connection._send_packed_command([b"PING\r\n"])  # _writer is None

    with pytest.raises(ConnectionResetError, match="writelines"):
        asyncio.run(write())


@pytest.mark.parametrize(("url", "safe"), [("redis://127.0.0.1:1/0", ResetSafeConnection),
                                           ("rediss://127.0.0.1:1/0", ResetSafeSSLConnection)])
def test_the_cluster_clients_nodes_use_the_reset_safe_connections(url: str,
                                                                   safe: type) -> None:
    client = cluster_client(url, socket_timeout=1)
    manager = client.nodes_manager
    assert [node.connection_class for node in manager.startup_nodes.values()] == [safe]
    # A node learned later (from CLUSTER SLOTS, a MOVED) is made from the manager's options.
    learned = ClusterNode("127.0.0.1", 2, **manager.connection_kwargs)
    assert learned.connection_class is safe
    assert isinstance(learned.acquire_connection(), safe)
    assert reset_safe(safe) is safe
