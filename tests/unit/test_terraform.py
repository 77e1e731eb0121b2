"""infra/terraform declares the buckets and topics that feedline.settings names.

There is no terraform binary here, so the HCL is read with regular expressions; the files
are written in `terraform fmt` style (blocks close at column 0), which the parsing relies on.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from feedline.settings import (
    REPO_ROOT,
    BatchSettings,
    ServingSettings,
    StackSettings,
    StreamingSettings,
)
from jobs.localstack.kafka import TOPIC_CONFIGS

TERRAFORM = REPO_ROOT / "infra" / "terraform"
BLOCK = r"^{kind}\s+{labels}\s*\{{\n(.*?)^\}}"


def read(name: str) -> str:
    return (TERRAFORM / name).read_text()


def blocks(text: str, kind: str, label_count: int) -> dict[tuple[str, ...], str]:
    """Top-level blocks of one kind: labels -> body."""
    labels = r"\s+".join([r'"([\w.-]+)"'] * label_count)
    pattern = re.compile(BLOCK.format(kind=kind, labels=labels), re.MULTILINE | re.DOTALL)
    return {match.groups()[:-1]: match.groups()[-1] for match in pattern.finditer(text)}


def variables() -> dict[str, str]:
    return {labels[0]: body for labels, body in blocks(read("variables.tf"), "variable", 1).items()}


def resources() -> dict[tuple[str, ...], str]:
    return blocks(read("main.tf"), "resource", 2)


def default_of(name: str) -> Any:
    """A variable's one-line default, parsed as JSON (strings, numbers, lists of strings)."""
    body = variables()[name]
    match = re.search(r"^\s*default\s*=\s*(.+?)\s*$", body, re.MULTILINE)
    assert match, f"variable {name} has no default"
    return json.loads(match.group(1))


def attribute(body: str, name: str) -> str:
    match = re.search(rf"^\s*{name}\s*=\s*(.+?)\s*$", body, re.MULTILINE)
    assert match, f"no {name} = … in\n{body}"
    return match.group(1)


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> StackSettings:
    """StackSettings exactly as declared: no FEEDLINE_* env, no .env file."""
    for name in list(os.environ):
        if name.startswith("FEEDLINE_"):
            monkeypatch.delenv(name)
    model: type[BaseSettings] = StackSettings
    settings = model(_env_file=None)
    assert isinstance(settings, StackSettings)
    return settings


def test_the_expected_files_exist() -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (TERRAFORM / name).is_file(), name


def test_blocks_are_balanced() -> None:
    for path in TERRAFORM.glob("*.tf"):
        text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', path.read_text())
        text = re.sub(r"#.*", "", text)
        for opening, closing in ("{}", "[]", "()"):
            assert text.count(opening) == text.count(closing), f"{path.name}: {opening}{closing}"


def test_every_variable_is_typed_and_described() -> None:
    declared = variables()
    assert declared, "no variables parsed"
    for name, body in declared.items():
        assert re.search(r'^\s*description\s*=\s*"[^"]+"', body, re.MULTILINE), name
        assert re.search(r"^\s*type\s*=", body, re.MULTILINE), name


def test_bucket_defaults_are_the_settings_buckets(defaults: StackSettings) -> None:
    assert default_of("media_bucket") == defaults.storage.media_bucket
    assert default_of("archive_bucket") == defaults.storage.archive_bucket
    declared = resources()
    assert attribute(declared["google_storage_bucket", "media"], "name") == "var.media_bucket"
    assert attribute(declared["google_storage_bucket", "archive"], "name") == "var.archive_bucket"


def test_topic_defaults_are_the_settings_topics(defaults: StackSettings) -> None:
    assert default_of("event_topics") == list(defaults.kafka.event_topics)
    assert default_of("dlq_suffix") == defaults.kafka.dlq_suffix
    assert default_of("event_topic_partitions") == defaults.kafka.partitions


def test_kafka_topics_and_dead_letter_topics_are_declared() -> None:
    declared = resources()
    events = declared["google_managed_kafka_topic", "event"]
    dead_letters = declared["google_managed_kafka_topic", "dead_letter"]
    for body in (events, dead_letters):
        assert attribute(body, "for_each") == "toset(var.event_topics)"
    assert attribute(events, "topic_id") == "each.value"
    assert attribute(events, "partition_count") == "var.event_topic_partitions"
    assert attribute(dead_letters, "topic_id") == '"${each.value}${var.dlq_suffix}"'
    assert attribute(dead_letters, "partition_count") == "1"


def test_every_topic_takes_the_brokers_append_time() -> None:
    """The local stack's ``TOPIC_CONFIGS`` on every declared topic (the arrival time of
    ``feedline.rules.retention``)."""
    declared = resources()
    topics = {labels[1]: body for labels, body in declared.items()
              if labels[0] == "google_managed_kafka_topic"}
    assert set(topics) == {"event", "dead_letter", "media", "media_dead_letter"}
    for name, body in topics.items():
        for key, value in TOPIC_CONFIGS.items():
            assert re.search(rf'"{re.escape(key)}"\s*=\s*"{value}"', body), name


def test_media_cors_allows_signed_url_puts_and_archive_gets_colder() -> None:
    declared = resources()
    media = declared["google_storage_bucket", "media"]
    cors = re.search(r"cors\s*\{(.*?)\n  \}", media, re.DOTALL)
    assert cors and '"PUT"' in cors.group(1)
    archive = declared["google_storage_bucket", "archive"]
    assert "lifecycle_rule" in archive
    assert re.search(r'type\s*=\s*"SetStorageClass"', archive)
    assert re.search(r'storage_class\s*=\s*"(NEARLINE|COLDLINE|ARCHIVE)"', archive)


def test_redis_is_an_lru_cache_without_persistence() -> None:
    redis = resources()["google_redis_instance", "cache"]
    assert re.search(r'"maxmemory-policy"\s*=\s*"allkeys-lru"', redis)
    assert re.search(r'persistence_mode\s*=\s*"DISABLED"', redis)


def test_scylla_is_a_variable_not_a_resource() -> None:
    assert "scylla_contact_points" in variables()
    assert not any("scylla" in kind for kind, _ in resources())


def test_feedline_env_output_names_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    output = blocks(read("outputs.tf"), "output", 1)[("feedline_env",)]
    names = re.findall(r"^\s*(FEEDLINE_\w+)\s*=", output, re.MULTILINE)
    assert names
    models: tuple[type[BaseSettings], ...] = (ServingSettings, StreamingSettings, BatchSettings)
    for name in names:
        path = name.removeprefix("FEEDLINE_").lower().split("__")
        assert any(_has_field(model, path) for model in models), f"{name} is no setting"


def _has_field(model: Any, path: list[str]) -> bool:
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
    return True


def test_no_secrets_or_download_urls_in_files() -> None:
    for path in [*TERRAFORM.glob("*.tf"), TERRAFORM / "README.md"]:
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} contains a URL"
    for name, body in variables().items():
        if re.search(r"secret|password|token|credential", name):
            assert not re.search(r"^\s*default\s*=", body, re.MULTILINE), name
