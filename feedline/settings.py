"""Settings for every feedline deployable, read from the environment and `.env`.

Each deployable (the API, the streaming jobs, the batch jobs, the local stack) has one
pydantic-settings model built from the same component blocks, so an endpoint is named
the same way everywhere. Nothing is built at import time: call the cached getters.

Environment variables use the ``FEEDLINE_`` prefix and ``__`` between levels, e.g.
``FEEDLINE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092`` or ``FEEDLINE_FEED__TIMELINE_CAP=500``.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from feedline.settings_blocks import (
    DEV_JWT_SECRET,
    REPO_ROOT,
    ApiSettings,
    BeamFlinkSettings,
    CqlSettings,
    FeedSettings,
    FlinkSettings,
    KafkaSettings,
    LocalStackSettings,
    MediaSettings,
    MonitoringSettings,
    RedisSettings,
    StorageSettings,
    redact_url,
)

#: Re-exported from ``feedline.settings_blocks``, where the blocks are defined.
__all__ = [
    "DEV_JWT_SECRET",
    "REPO_ROOT",
    "ApiSettings",
    "BeamFlinkSettings",
    "CqlSettings",
    "FeedSettings",
    "FlinkSettings",
    "KafkaSettings",
    "LocalStackSettings",
    "MediaSettings",
    "MonitoringSettings",
    "RedisSettings",
    "StorageSettings",
    "redact_url",
]

ENV_PREFIX = "FEEDLINE_"
ENV_NESTING = "__"

#: ``FEEDLINE_*`` variables that are not settings of any deployable, with who reads them.
OTHER_VARIABLES = {
    "FEEDLINE_KEEP_STACK": "the test fixtures: keep a local stack the tests started",
}


class SettingsError(ValueError):
    """The environment or `.env` names an unknown ``FEEDLINE_*`` key or an invalid value.

    Its message is one line that names the key (and, for a typo, the closest valid one).
    """


class _FeedlineSettings(BaseSettings):
    """Fields every deployable shares."""

    # One `.env` serves every deployable: a key another model owns is ignored here, and
    # a key no model owns is refused by `check_setting_keys` before the model is built.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTING,
        env_file=".env",
        extra="ignore",
        use_attribute_docstrings=True,
        frozen=True,
    )

    def __init__(self, **values: Any) -> None:
        env_file = self.model_config.get("env_file")
        check_setting_keys(Path(env_file) if isinstance(env_file, str | Path) else None)
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise SettingsError(describe_validation_error(error)) from None

    environment: Literal["dev", "test", "staging", "prod"] = "prod"
    """Deployment environment; placeholder secrets are refused outside dev and test, so an
    API started without its configuration fails closed (only the local stack defaults to dev)."""
    kafka: KafkaSettings = KafkaSettings()
    """Event log."""
    cql: CqlSettings = CqlSettings()
    """CQL store."""
    redis: RedisSettings = RedisSettings()
    """Serving cache."""
    storage: StorageSettings = StorageSettings()
    """Object storage."""
    feed: FeedSettings = FeedSettings()
    """Feed rules."""
    media: MediaSettings = MediaSettings()
    """Media processing."""


class ServingSettings(_FeedlineSettings):
    """The FastAPI feed API."""

    api: ApiSettings = ApiSettings()
    """HTTP server and auth."""

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> ServingSettings:
        if self.environment not in ("dev", "test") and self.api.jwt_secret == DEV_JWT_SECRET:
            raise ValueError(
                "FEEDLINE_API__JWT_SECRET is the development placeholder; "
                f"set a real secret for environment {self.environment!r}"
            )
        if self.environment not in ("dev", "test") and len(self.api.jwt_secret.encode()) < 32:
            raise ValueError("FEEDLINE_API__JWT_SECRET must be at least 32 bytes (RFC 7518 3.2)")
        return self


class StreamingSettings(_FeedlineSettings):
    """The PyFlink fan-out, counters and archiver jobs."""

    flink: FlinkSettings = FlinkSettings()
    """Flink cluster and job defaults."""


class BatchSettings(_FeedlineSettings):
    """The Beam rebuild jobs and on-call tooling."""

    archive_prefix: str = "events"
    """Object prefix of the event archive inside the archive bucket."""
    beam_flink: BeamFlinkSettings = BeamFlinkSettings()
    """The rebuild's Flink runner (``feedctl rebuild … --runner flink``)."""


class StackSettings(_FeedlineSettings):
    """The local stack and `feedctl` (it needs every endpoint plus the process details)."""

    environment: Literal["dev", "test", "staging", "prod"] = "dev"
    """The local stack is a development stack: dev unless set; the API it starts (and the
    tokens `feedctl token` mints for it) get this environment explicitly."""
    flink: FlinkSettings = FlinkSettings()
    """Flink cluster."""
    api: ApiSettings = ApiSettings()
    """API process started by `make run`."""
    local: LocalStackSettings = LocalStackSettings()
    """Process-based local stack."""
    monitoring: MonitoringSettings = MonitoringSettings()
    """Prometheus and its exporters on the local stack."""


@lru_cache(maxsize=1)
def get_serving_settings() -> ServingSettings:
    """The API's settings, read once."""
    return ServingSettings()


@lru_cache(maxsize=1)
def get_streaming_settings() -> StreamingSettings:
    """The streaming jobs' settings, read once."""
    return StreamingSettings()


@lru_cache(maxsize=1)
def get_batch_settings() -> BatchSettings:
    """The batch jobs' settings, read once."""
    return BatchSettings()


@lru_cache(maxsize=1)
def get_stack_settings() -> StackSettings:
    """The local stack's and feedctl's settings, read once."""
    return StackSettings()


DEPLOYABLES: tuple[type[_FeedlineSettings], ...] = (
    ServingSettings, StreamingSettings, BatchSettings, StackSettings)


def _field_keys(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{name.upper()}"
        yield key
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _field_keys(annotation, key + ENV_NESTING)


@lru_cache(maxsize=1)
def known_setting_keys() -> frozenset[str]:
    """Every ``FEEDLINE_*`` variable some deployable reads (blocks and their fields)."""
    keys = {key for model in DEPLOYABLES for key in _field_keys(model, ENV_PREFIX)}
    return frozenset(keys | set(OTHER_VARIABLES))


def unknown_key_message(key: str, source: str) -> str:
    """One line naming an unknown key, where it was set, and the closest valid key."""
    known = sorted(known_setting_keys())
    closest = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)
    hint = f"; did you mean {closest[0]}?" if closest else f"; see {ENV_PREFIX}* in the README"
    return f"unknown setting {key} (in {source}){hint}"


def check_setting_keys(env_file: Path | None = Path(".env")) -> None:
    """Refuse a ``FEEDLINE_*`` key in the environment or ``env_file`` that no model knows.

    A key that one deployable owns is accepted by all, so a shared `.env` works for each.
    """
    sources: list[tuple[str, str]] = [(key, "the environment") for key in os.environ]
    if env_file is not None and env_file.is_file():
        sources += [(key, str(env_file)) for key in dotenv_values(env_file)]
    known = known_setting_keys()
    for key, source in sources:
        if key.upper().startswith(ENV_PREFIX) and key.upper() not in known:
            raise SettingsError(unknown_key_message(key, source))


def describe_validation_error(error: ValidationError) -> str:
    """A pydantic error about settings as one line naming the ``FEEDLINE_*`` keys."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        location = [str(part) for part in item["loc"]]
        message = str(item["msg"]).removeprefix("Value error, ")
        if not location:
            parts.append(message)
            continue
        key = ENV_PREFIX + ENV_NESTING.join(location).upper()
        if item["type"] == "extra_forbidden":
            parts.append(unknown_key_message(key, "the settings"))
        else:
            parts.append(f"invalid setting {key}: {message}")
    return "; ".join(parts) or "invalid settings"


@contextmanager
def settings_errors_exit(program: str) -> Iterator[None]:
    """Turn a `SettingsError` inside the block into one line on stderr and exit code 2."""
    try:
        yield
    except SettingsError as error:
        print(f"{program}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
