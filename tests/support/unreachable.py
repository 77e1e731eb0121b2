"""Serving settings with every dependency unreachable (nothing listens on port 1).

Enough for what needs no store: the OpenAPI document, the docs pages, auth and problems.
"""

from __future__ import annotations

from feedline.settings import (
    ApiSettings,
    CqlSettings,
    KafkaSettings,
    RedisSettings,
    ServingSettings,
    StorageSettings,
)

UNREACHABLE = ServingSettings(
    environment="test",
    kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
    redis=RedisSettings(url="redis://127.0.0.1:1/0"),
    cql=CqlSettings(port=1),
    storage=StorageSettings(emulator_host="http://127.0.0.1:1"),
    api=ApiSettings(access_log=False, gc_freeze=False),
)
