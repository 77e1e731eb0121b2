from __future__ import annotations

import pytest
from pydantic import ValidationError

from feedline.settings import (
    DEV_JWT_SECRET,
    ServingSettings,
    StackSettings,
    StreamingSettings,
    get_stack_settings,
)


def test_nested_env_vars_reach_the_right_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_KAFKA__BOOTSTRAP_SERVERS", "broker:19092")
    monkeypatch.setenv("FEEDLINE_FEED__TIMELINE_CAP", "500")
    monkeypatch.setenv("FEEDLINE_CQL__CONTACT_POINTS", '["a", "b"]')
    s = StreamingSettings()
    assert s.kafka.bootstrap_servers == "broker:19092"
    assert s.feed.timeline_cap == 500
    assert s.cql.contact_points == ("a", "b")


def test_unknown_field_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_KAFKA__BOOTSTRAP", "typo")
    with pytest.raises(ValidationError, match="bootstrap"):
        StreamingSettings()


def test_placeholder_secret_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_ENVIRONMENT", "prod")
    with pytest.raises(ValidationError, match="JWT_SECRET is the development placeholder"):
        ServingSettings()
    monkeypatch.setenv("FEEDLINE_API__JWT_SECRET", "s3cr3t-from-a-vault")
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        ServingSettings()
    monkeypatch.setenv("FEEDLINE_API__JWT_SECRET", "s3cr3t-from-a-vault-" + "x" * 12)
    assert ServingSettings().api.jwt_secret != DEV_JWT_SECRET


def test_dlq_names_and_topic_order() -> None:
    k = StackSettings().kafka
    assert k.event_topics == ("uploads", "follows", "engagements")
    assert k.dlq_topic("uploads") == "uploads.dlq"


def test_fields_are_documented() -> None:
    for block in ("kafka", "cql", "redis", "storage", "feed", "flink", "api", "local"):
        model = type(getattr(StackSettings(), block))
        for name, field in model.model_fields.items():
            assert field.description, f"{block}.{name} has no docstring"


def test_getter_is_cached_not_built_at_import() -> None:
    get_stack_settings.cache_clear()
    assert get_stack_settings() is get_stack_settings()


def test_empty_emulator_host_means_real_gcs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_STORAGE__EMULATOR_HOST", "")
    assert StreamingSettings().storage.emulator_host is None
