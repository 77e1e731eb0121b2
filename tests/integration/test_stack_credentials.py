"""The local stack enforces the stores' credentials (issue 12): Cassandra's
PasswordAuthenticator and a Redis ACL, with every client of the stack logging in."""

from __future__ import annotations

import pytest
import redis
from cassandra.cluster import NoHostAvailable

from feedline.settings import StackSettings
from feedline.stores.cql import connect
from jobs.localstack.cassandra import DEFAULT_SUPERUSER, login_refused
from jobs.localstack.redis_server import EXPORTER_USER, exporter_password, guards_url


@pytest.mark.parametrize("which", ["cache", "guards"])
def test_redis_refuses_anonymous_clients_and_the_exporter_cannot_write(
        stack: StackSettings, which: str) -> None:
    url = stack.redis.url if which == "cache" else guards_url(stack)
    assert "@" in url, "the stack's Redis URL carries its ACL user"
    host_port = url.rpartition("@")[2]
    anonymous = redis.Redis.from_url(f"redis://{host_port}")
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    wrong = redis.Redis.from_url(url.replace("@", "-not-it@", 1), socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    app = redis.Redis.from_url(url)
    assert app.ping() and app.acl_whoami() == url.split("//")[1].split(":")[0]
    exporter = redis.Redis.from_url(f"redis://{host_port}", username=EXPORTER_USER,
                                    password=exporter_password(stack))
    assert "used_memory" in exporter.info("memory")
    with pytest.raises(redis.exceptions.NoPermissionError):
        exporter.set("feedline-acl-test", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        exporter.get("feedline-acl-test")


def test_cassandra_refuses_anonymous_and_default_logins(stack: StackSettings) -> None:
    assert stack.cql.username, "the stack logs in to the CQL store"
    for refused in ({"settings": stack.cql.model_copy(update={"username": None})},
                    {"settings": stack.cql, "as_role": DEFAULT_SUPERUSER},
                    {"settings": stack.cql.model_copy(update={"password": "not-it"})}):
        with pytest.raises(NoHostAvailable) as err:
            connect(timeout_s=5, **refused)  # type: ignore[arg-type]
        assert login_refused(err.value), err.value
    cluster, session = connect(stack.cql, keyspace=stack.cql.keyspace)
    try:
        assert session.execute("SELECT role FROM system_auth.roles WHERE role = %s",
                               (stack.cql.username,)).one() is not None
    finally:
        cluster.shutdown()
