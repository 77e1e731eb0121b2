"""Redis from the Debian package: the feed cache and the guards store.

The cache is rebuildable and evicts; the guards store (rate-limit counters, idempotency
records) never evicts.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from urllib.parse import urlsplit

import redis

from feedline.settings import StackSettings, redact_url
from jobs.localstack.base import Service

#: The ACL user prometheus-redis-exporter logs in as: it may read what INFO and its other
#: probes show, and write nothing.
EXPORTER_USER = "feedline-exporter"
EXPORTER_RULES = ("-@all +@connection +info +config|get +client|list +slowlog|get "
                  "+slowlog|len +latency|latest +latency|histogram +cluster|info +dbsize "
                  "+memory|usage +select +ping +scan +type +strlen +llen +scard +zcard +hlen "
                  "+xlen +pfcount")


def exporter_password(settings: StackSettings) -> str:
    """The exporter's Redis password: made once per state directory, kept in a 0600 file."""
    import secrets

    path = settings.local.state_dir / "secrets" / "redis-exporter.password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def acl_lines(url: str, exporter_secret: str) -> list[str]:
    """redis.conf ACL lines for the credentials in ``url`` (none: the open default user).

    ``redis://USER:PASSWORD@…``: USER may do everything (the default user is switched off,
    so every client must log in); ``redis://:PASSWORD@…``: the default user needs the
    password. Either way the exporter gets its own read-only user.
    """
    parts = urlsplit(url)
    if not parts.password:
        return []
    user = parts.username or "default"
    for name in (user, parts.password):
        if any(c.isspace() for c in name) or name.startswith((">", "<", "#")):
            raise ValueError(f"the Redis user or password in {redact_url(url)} cannot be "
                             "written to redis.conf (whitespace, or a leading >, < or #)")
    lines = [] if user == "default" else ["user default off"]
    lines.append(f"user {user} on >{parts.password} ~* &* +@all")
    lines.append(f"user {EXPORTER_USER} on >{exporter_secret} {EXPORTER_RULES}")
    return lines


def redis_address(url: str) -> tuple[str, int]:
    """The host and port a Redis URL names (127.0.0.1 and 6379 when left out)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


class RedisService(Service):
    """redis-server on loopback: no persistence, LRU eviction, compact sorted sets."""

    name = "redis"
    eviction = "allkeys-lru"
    """Anything may go under memory pressure: every key is rebuilt from the stores."""

    def url(self) -> str:
        """The server's connection URL."""
        return self.settings.redis.url

    def maxmemory(self) -> str:
        """The server's memory limit."""
        return self.settings.local.redis_maxmemory

    def _host_port(self) -> tuple[str, int]:
        return redis_address(self.url())

    def endpoint(self) -> str:
        """Connection URL (password hidden)."""
        return redact_url(self.url())

    def prepare(self) -> None:
        """Write redis.conf."""
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        conf = self.home / "redis.conf"
        conf.touch(mode=0o600)  # it holds the ACL passwords
        conf.chmod(0o600)
        conf.write_text("\n".join(self.config_lines()) + "\n")

    def config_lines(self) -> list[str]:
        """The lines of redis.conf."""
        host, port = self._host_port()
        # Timelines are capped at feed.timeline_cap entries of short ids: keep them in the
        # compact listpack encoding up to that size (a skiplist costs several times more).
        listpack_entries = max(128, self.settings.feed.timeline_cap + 64)
        lines = [
            f"bind {host}",
            f"port {port}",
            "protected-mode yes",
            "daemonize no",
            f"dir {self.home}",
            'save ""',
            "appendonly no",
            f"maxmemory {self.maxmemory()}",
            f"maxmemory-policy {self.eviction}",
            f"zset-max-listpack-entries {listpack_entries}",
            "zset-max-listpack-value 64",
            "hash-max-listpack-entries 128",
            "hash-max-listpack-value 256",
            f"logfile {self.home / 'logs' / 'redis.log'}",
            *acl_lines(self.url(), exporter_password(self.settings)),
        ]
        return lines

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """Run redis-server with the generated config."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [binary, str(self.home / "redis.conf")], {}

    def marker(self) -> str:
        """redis-server rewrites its argv to ``host:port``; match the port."""
        return f":{self._host_port()[1]}"

    def healthy(self) -> bool:
        """PING answers PONG."""
        try:
            client = redis.Redis.from_url(self.url(), socket_timeout=1)
            return bool(client.ping())
        except redis.RedisError:
            return False


def guards_url(settings: StackSettings) -> str:
    """Where the API keeps its guards: ``redis.guards_url``, else the stack's guards Redis."""
    if settings.redis.guards_url:
        return settings.redis.guards_url
    auth = urlsplit(settings.redis.url).netloc.rpartition("@")[0]  # the cache's credentials
    return f"redis://{auth + '@' if auth else ''}127.0.0.1:{settings.local.redis_guards_port}/0"


class RedisGuardsService(RedisService):
    """A second redis-server for rate-limit counters and idempotency records.

    They must not share the cache's ``allkeys-lru``: under memory pressure the cache would
    evict a counter (a client's limit resets) or an idempotency record (a retry becomes a
    second event). Eviction is server-wide, so a logical database of the cache would not do.
    """

    name = "redis-guards"
    eviction = "noeviction"

    def url(self) -> str:
        """The guards URL the API is given."""
        return guards_url(self.settings)

    def maxmemory(self) -> str:
        """The guards server's memory limit."""
        return self.settings.local.redis_guards_maxmemory
