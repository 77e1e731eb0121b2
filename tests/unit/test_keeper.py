"""The record of deployed jobs and where a lost one starts again (no cluster needed)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from feedline.settings import LocalStackSettings, StackSettings, StreamingSettings
from jobs import keeper


@pytest.fixture
def stack(tmp_path: Path) -> StackSettings:
    return StackSettings(local=LocalStackSettings(state_dir=tmp_path))


def _job(job_id: str, suffix: str = "", restored_from: str | None = None) -> keeper.KeptJob:
    return keeper.KeptJob("fanout", suffix, job_id, restored_from,
                          StreamingSettings().model_dump_json())


def _checkpoint(stack: StackSettings, job_id: str, number: int, complete: bool = True) -> Path:
    folder = keeper.checkpoint_root(stack) / job_id / f"chk-{number}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "_metadata").write_bytes(b"x")
    return folder


def test_remember_replaces_by_job_name_and_forget_drops(stack: StackSettings) -> None:
    keeper.remember(stack, _job("a" * 32))
    keeper.remember(stack, _job("b" * 32))  # redeployed: the newer deployment wins
    keeper.remember(stack, _job("c" * 32, suffix="-x1"))
    assert {name: job.job_id for name, job in keeper.kept(stack).items()} == {
        "feedline-fanout": "b" * 32, "feedline-fanout-x1": "c" * 32}
    assert keeper.kept(stack)["feedline-fanout"].streaming == StreamingSettings().model_dump_json()
    assert keeper.forget(stack, "feedline-fanout") is True
    assert keeper.forget(stack, "feedline-fanout") is False
    assert list(keeper.kept(stack)) == ["feedline-fanout-x1"]
    # The records hold the stores' credentials: only their owner reads them.
    assert {path.name: path.stat().st_mode & 0o777 for path in (
        keeper.records_file(stack), keeper._specs_file(stack))} == {
        keeper.records_file(stack).name: 0o600, keeper._specs_file(stack).name: 0o600}


def test_deployments_recorded_side_by_side_each_keep_their_entry(stack: StackSettings) -> None:
    """``Sandbox.deploy_all`` (and two operators) record jobs at once: none may be lost to
    another's read-change-write of the record."""
    suffixes = [f"-s{n}" for n in range(24)]

    def record(suffix: str) -> None:
        keeper.remember(stack, _job(suffix[2:].rjust(32, "0"), suffix=suffix))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(record, suffixes))
    assert sorted(keeper.kept(stack)) == sorted(f"feedline-fanout{s}" for s in suffixes)
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(lambda s: keeper.forget(stack, f"feedline-fanout{s}"), suffixes))
    assert keeper.kept(stack) == {}


def test_a_job_reads_its_settings_from_a_file(tmp_path: Path) -> None:
    from pipelines.streaming.job_graph import parse_job_args

    settings = StreamingSettings.model_validate({"cql": {"password": "s3cret"}})
    path = tmp_path / "settings.json"
    path.write_text(settings.model_dump_json())
    args = parse_job_args("job", ["--settings-file", str(path), "--group-id", "g",
                                  "--job-name", "j"])
    assert args.settings == settings and args.settings.cql.password == "s3cret"
    with pytest.raises(SystemExit):  # one or the other
        parse_job_args("job", ["--settings-file", str(path), "--settings-json", "{}",
                               "--group-id", "g", "--job-name", "j"])


def test_restore_point_is_the_newest_complete_checkpoint(stack: StackSettings) -> None:
    job_id = "d" * 32
    _checkpoint(stack, job_id, 2)
    newest = _checkpoint(stack, job_id, 10)  # numerically newest, not by name (chk-10 < chk-2)
    _checkpoint(stack, job_id, 11, complete=False)  # being written when the JobManager died
    _checkpoint(stack, "e" * 32, 12)  # another job's
    assert keeper.latest_checkpoint(stack, job_id) == newest
    assert keeper.restore_point(stack, _job(job_id, restored_from="file:///sp/1")) \
        == newest.resolve().as_uri()


def test_without_a_checkpoint_a_job_starts_where_it_had_started(stack: StackSettings) -> None:
    assert keeper.restore_point(stack, _job("f" * 32, restored_from="file:///sp/1")) == \
        "file:///sp/1"
    assert keeper.restore_point(stack, _job("f" * 32)) is None
    assert keeper.kept(stack) == {}  # no file yet: nothing recorded


def test_a_record_this_code_cannot_read_does_not_stop_the_others(
        stack: StackSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running supervisor of an older checkout failed its whole resume step, every 2 s,
    on one job recorded by newer code (a setting it did not know): no job came back."""
    import json

    from jobs import flink_rest

    monkeypatch.setattr(flink_rest, "running", lambda _url, _name: [])  # the cluster lost all
    keeper.remember(stack, _job("a" * 32))
    newer = json.loads(StreamingSettings().model_dump_json())
    newer["flink"]["a_setting_of_a_later_version"] = 1
    keeper.remember(stack, keeper.KeptJob("fanout", "-new", "b" * 32, None, json.dumps(newer)))
    said: list[str] = []
    assert keeper.resume_lost(stack, said.append, dry_run=True) == ["feedline-fanout"]
    unreadable = [line for line in said if "feedline-fanout-new" in line]
    assert len(unreadable) == 1 and unreadable[0].startswith(
        "could not resume feedline-fanout-new: its recorded settings do not validate")
    assert "A_SETTING_OF_A_LATER_VERSION" in unreadable[0], unreadable
    assert "input_value" not in unreadable[0]  # the record's values (credentials) stay out
    assert "feedline-fanout-new" in keeper.kept(stack)  # left recorded: tried again next run
