from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feedline.settings import (
    DEPLOYABLES,
    DEV_JWT_SECRET,
    BatchSettings,
    ServingSettings,
    SettingsError,
    StackSettings,
    StreamingSettings,
    get_stack_settings,
    known_setting_keys,
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
    with pytest.raises(SettingsError, match="FEEDLINE_KAFKA__BOOTSTRAP "):
        StreamingSettings()


def test_typo_names_the_closest_valid_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_KAFKA__BOOTSTRAP_SERVER", "127.0.0.1:9092")
    for model in DEPLOYABLES:
        with pytest.raises(SettingsError) as caught:
            model()
        message = str(caught.value)
        assert "\n" not in message
        assert message == ("unknown setting FEEDLINE_KAFKA__BOOTSTRAP_SERVER (in the environment);"
                           " did you mean FEEDLINE_KAFKA__BOOTSTRAP_SERVERS?")


def test_one_env_file_serves_every_deployable(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    """The README's `.env` example holds keys of several models; each model takes its own."""
    (tmp_path / ".env").write_text(
        "FEEDLINE_KAFKA__BOOTSTRAP_SERVERS=broker:19092\n"
        "FEEDLINE_API__JWT_SECRET=a-real-secret-of-at-least-thirty-two-bytes\n"
        "FEEDLINE_FLINK__PARALLELISM=2\n"
        "FEEDLINE_ARCHIVE_PREFIX=events-v2\n"
        "UNRELATED_TOOL_SETTING=kept-for-another-program\n")
    monkeypatch.chdir(tmp_path)
    assert ServingSettings().api.jwt_secret.startswith("a-real-secret")
    assert StreamingSettings().flink.parallelism == 2
    assert BatchSettings().archive_prefix == "events-v2"
    stack = StackSettings()
    assert (stack.kafka.bootstrap_servers, stack.flink.parallelism) == ("broker:19092", 2)


def test_unknown_key_in_env_file_is_refused(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FEEDLINE_FEED__TIMELINE_CAPP=500\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match=r"FEEDLINE_FEED__TIMELINE_CAPP \(in \.env\); "
                                            r"did you mean FEEDLINE_FEED__TIMELINE_CAP\?"):
        BatchSettings()


def test_invalid_value_is_one_line_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_FEED__TIMELINE_CAP", "0")
    with pytest.raises(SettingsError) as caught:
        StreamingSettings()
    assert str(caught.value) == ("invalid setting FEEDLINE_FEED__TIMELINE_CAP: "
                                 "Input should be greater than or equal to 1")


def test_every_field_has_a_known_key() -> None:
    keys = known_setting_keys()
    assert {"FEEDLINE_API__JWT_SECRET", "FEEDLINE_FLINK__REST_URL", "FEEDLINE_ARCHIVE_PREFIX",
            "FEEDLINE_LOCAL__STATE_DIR", "FEEDLINE_ENVIRONMENT", "FEEDLINE_KAFKA"} <= keys
    for model in DEPLOYABLES:
        for name in model.model_fields:
            assert f"FEEDLINE_{name.upper()}" in keys


def test_batch_entry_point_answers_a_typo_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FEEDLINE_REDIS__URLL": "redis://127.0.0.1:6379/0"}
    done = subprocess.run([sys.executable, "-m", "pipelines.batch.rebuild_counters", "--dry-run"],
                          env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "rebuild_counters: unknown setting FEEDLINE_REDIS__URLL (in the environment);"
        " did you mean FEEDLINE_REDIS__URL?"]


def test_placeholder_secret_refused_unless_dev_or_test_is_chosen(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("FEEDLINE_ENVIRONMENT", raising=False)
    monkeypatch.delenv("FEEDLINE_API__JWT_SECRET", raising=False)
    with pytest.raises(SettingsError, match="secret for environment 'prod'"):
        ServingSettings()
    assert StackSettings().environment == "dev"  # the local stack is a development stack
    for chosen in ("dev", "test"):
        monkeypatch.setenv("FEEDLINE_ENVIRONMENT", chosen)
        assert ServingSettings().api.jwt_secret == DEV_JWT_SECRET


def test_placeholder_secret_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_ENVIRONMENT", "prod")
    with pytest.raises(SettingsError, match="JWT_SECRET is the development placeholder"):
        ServingSettings()
    monkeypatch.setenv("FEEDLINE_API__JWT_SECRET", "s3cr3t-from-a-vault")
    with pytest.raises(SettingsError, match="at least 32 bytes"):
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


def test_env_example_is_a_valid_development_env(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    (tmp_path / ".env").write_text(example.read_text())
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("FEEDLINE_")]:
        monkeypatch.delenv(name)
    served = ServingSettings()  # the placeholder secret is accepted: dev is chosen explicitly
    assert (served.environment, served.api.jwt_secret) == ("dev", DEV_JWT_SECRET)
