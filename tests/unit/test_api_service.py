"""The local-stack API service and `feedctl token`, without starting anything."""

from __future__ import annotations

import pytest

from feedline.settings import ApiSettings, KafkaSettings, ServingSettings, StackSettings
from jobs.feedctl.token import register
from jobs.localstack.api import ApiService
from jobs.localstack.redis_server import guards_url
from serving.auth import verify_token


def test_api_service_hands_the_stack_settings_to_the_api(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path) -> None:
    stack = StackSettings(kafka=KafkaSettings(bootstrap_servers="k:1"),
                          api=ApiSettings(port=8123, workers=2, rate_limit_per_minute=77),
                          local={"state_dir": tmp_path})
    service = ApiService(stack)
    argv, env = service.command()
    assert argv[1:5] == ["-m", "uvicorn", "serving.main:create_app", "--factory"]
    assert ["--workers", "2"] == argv[argv.index("--workers"):argv.index("--workers") + 2]
    assert service.marker() in " ".join(argv)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    served = ServingSettings()
    assert served.kafka.bootstrap_servers == "k:1"
    assert served.api.port == 8123 and served.api.rate_limit_per_minute == 77
    assert served.cql == stack.cql
    # The guards (rate limits, idempotency) go to the stack's non-evicting Redis.
    assert served.redis == stack.redis.model_copy(
        update={"guards_url": guards_url(stack)})
    assert guards_url(stack).endswith(f"@127.0.0.1:{stack.local.redis_guards_port}/0")
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "api" / "metrics")
    assert env["FEEDLINE_ENVIRONMENT"] == "dev"  # chosen explicitly: the API's default is prod
    assert env["UVICORN_HTTP"] == "serving.http_protocol:GuardedHttpToolsProtocol"
    (tmp_path / "api" / "metrics").mkdir(parents=True)
    (tmp_path / "api" / "metrics" / "counter_1.db").write_text("stale")
    service.prepare()
    assert not list((tmp_path / "api" / "metrics").iterdir())


def run_token(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="noun"))
    parsed = parser.parse_args(["token", *args])
    code = parsed.run(parsed)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_token_prints_a_valid_token_last(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_API__JWT_SECRET", "a-test-secret-of-32-bytes-or-more!!")
    code, lines, _ = run_token(capsys, "u00042", "--ttl-days", "1")
    assert code == 0
    assert verify_token("a-test-secret-of-32-bytes-or-more!!", lines[-1])[0] == "u00042"


def test_token_refuses_bad_ids_and_the_placeholder_in_prod(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_token(capsys, "not valid")[0] == 2
    monkeypatch.setenv("FEEDLINE_ENVIRONMENT", "prod")
    code, lines, err = run_token(capsys, "u1")
    assert code == 2 and not lines  # a configuration error
    assert "development placeholder" in err


def test_token_refuses_a_lifetime_the_api_would_refuse(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_API__JWT_MAX_LIFETIME_S", str(2 * 24 * 3600))
    code, lines, err = run_token(capsys, "u1", "--ttl-days", "3")
    assert code == 2 and not lines
    assert "FEEDLINE_API__JWT_MAX_LIFETIME_S" in err
    assert run_token(capsys, "u1", "--ttl-days", "2")[0] == 0
