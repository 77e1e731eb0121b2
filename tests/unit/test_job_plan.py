"""The plan's logic, the savepoint uid reader, code versions, releases and the history."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from feedline.settings import StackSettings
from jobs import flink_rest, history
from jobs.plan import Current, Desired, compare, running_state
from jobs.releases import code_version, make_release
from jobs.rollout import spec_from_record, spec_record
from jobs.savepoint_meta import MAGIC, murmur3_128, operator_id, read_operators, uids_in_metadata
from jobs.specs import JOBS

UIDS = ("parse-uploads", "npost-state", "write-notifications")


def _desired(**changes: object) -> Desired:
    fields: dict[str, object] = {"version": "v2", "parallelism": 1, "flags": (),
                                 "entry_point": "pipelines.streaming.notifications_job",
                                 "upgrade_mode": "savepoint", "operator_uids": UIDS}
    fields.update(changes)
    return Desired(**fields)  # type: ignore[arg-type]


def _current(**changes: object) -> Current:
    fields: dict[str, object] = {"job_id": "j1", "parallelism": 1, "version": "v2", "flags": (),
                                 "entry_point": "pipelines.streaming.notifications_job",
                                 "state": "file:///sp/chk-3"}
    fields.update(changes)
    return Current(**fields)  # type: ignore[arg-type]


def test_nothing_to_do_when_the_running_job_matches() -> None:
    plan = compare("feedline-n", _desired(), _current(), list(UIDS), free_slots=0)
    assert (plan.action, plan.changes, plan.problems, plan.compatible) == ("none", [], [], True)


def test_a_changed_version_and_parallelism_upgrade_compatibly() -> None:
    plan = compare("feedline-n", _desired(parallelism=2), _current(version="v1"),
                   list(UIDS), free_slots=1)
    assert plan.action == "upgrade" and plan.compatible and plan.problems == []
    assert [(c.field, c.current, c.desired) for c in plan.changes] == [
        ("version", "v1", "v2"), ("parallelism", 1, 2)]
    assert plan.state_from == "file:///sp/chk-3"


def test_a_uid_missing_from_the_new_version_is_incompatible() -> None:
    renamed = (*UIDS[:1], "post-state", UIDS[2])
    plan = compare("feedline-n", _desired(operator_uids=renamed), _current(version="v1"),
                   list(UIDS), free_slots=4)
    assert not plan.compatible and plan.missing_uids == ["npost-state"]
    assert "npost-state" in plan.problems[0]
    assert any("post-state" in note for note in plan.notes)  # new operators start empty


def test_dropping_an_operator_without_state_is_compatible() -> None:
    plan = compare("feedline-n", _desired(operator_uids=UIDS[1:]), _current(version="v1"),
                   list(UIDS), free_slots=4, stateless_uids=["parse-uploads"])
    assert plan.compatible and plan.problems == [] and plan.missing_uids == []
    assert any("without state" in note and "parse-uploads" in note for note in plan.notes)


def test_parallelism_over_the_states_max_parallelism_is_a_problem() -> None:
    plan = compare("feedline-n", _desired(parallelism=5), _current(version="v1"),
                   list(UIDS), free_slots=8, max_parallelism=4)
    assert plan.problems == ["parallelism 5 is over the state's max parallelism 4"]


def test_stateless_upgrades_ignore_the_state() -> None:
    plan = compare("feedline-n", _desired(upgrade_mode="stateless", operator_uids=("x",)),
                   _current(version="v1"), None, free_slots=4)
    assert plan.compatible and plan.state_from is None and plan.problems == []
    assert any("dropped" in note for note in plan.notes)


def test_too_few_slots_is_a_problem() -> None:
    plan = compare("feedline-n", _desired(parallelism=4), _current(version="v1"),
                   list(UIDS), free_slots=2)
    assert plan.problems == ["parallelism 4 needs 4 task slots; 3 would be free"]


def test_a_job_deployed_without_apply_has_an_unknown_version() -> None:
    plan = compare("feedline-n", _desired(), _current(version=None, flags=None,
                                                      entry_point=None), list(UIDS), 0)
    assert plan.action == "upgrade" and {c.field for c in plan.changes} == {
        "version", "flags", "entry_point"}
    assert any("without `jobs apply`" in note for note in plan.notes)


def test_starting_from_a_savepoint_checks_its_uids() -> None:
    plan = compare("feedline-n", _desired(operator_uids=UIDS[:2]), None, list(UIDS), 6,
                   from_savepoint="file:///sp/savepoint-1")
    assert plan.action == "start" and plan.missing_uids == ["write-notifications"]
    fresh = compare("feedline-n", _desired(), None, None, 6)
    assert fresh.action == "start" and fresh.compatible and fresh.problems == []


def test_murmur3_matches_known_answers() -> None:
    # Reference values of MurmurHash3 x64 128 (seed 0), as Guava and the mmh3 package give.
    assert murmur3_128(b"").hex() == "00000000000000000000000000000000"
    assert murmur3_128(b"hello").hex() == "029bbd41b3a7d8cb191dae486a901e5b"
    assert murmur3_128(b"The quick brown fox jumps over the lazy dog").hex() == (
        "6c1b07bc7bbc4be347939ac4a93c437a")


def _operator(name: str, uid: str, op_id: bytes, *, state: bool = False,
              subtasks: int = 1, max_parallelism: int = 128) -> bytes:
    """One operator as metadata version 5+ writes it (state: one managed operator state)."""
    def utf(text: str) -> bytes:
        return struct.pack(">H", len(text)) + text.encode()
    empty = struct.pack(">ii", 0, 0) + b"\0\0" + struct.pack(">ii", 0, 0)
    held = struct.pack(">i", 1) + b"\x01" + struct.pack(">i", 0) + b"\0" + empty[4:]
    body = b"".join(struct.pack(">i", index) + (held if state and index == subtasks - 1
                                                   else empty) for index in range(subtasks))
    return (utf(name) + utf(uid) + op_id + struct.pack(">ii", subtasks, max_parallelism)
            + b"\0" + struct.pack(">i", subtasks) + body)


def test_uids_are_read_where_their_own_id_follows(tmp_path: Path) -> None:
    raw = (MAGIC + struct.pack(">iq", 6, 17)
           + _operator("npost-state", "npost-state", murmur3_128(b"npost-state"), state=True,
                       subtasks=2, max_parallelism=256)
           + _operator("Source: src", "", bytes(range(16)), state=True)  # a generated id
           + _operator("fake", "lookalike", murmur3_128(b"other"))  # id of another uid
           + _operator("parse-uploads", "parse-uploads", bytes.fromhex(
               operator_id("parse-uploads")), subtasks=2)
           + _operator("end: Writer", "end", murmur3_128(b"end")))
    assert uids_in_metadata(raw) == ["npost-state", "parse-uploads", "end"]
    folder = tmp_path / "savepoint-1"
    folder.mkdir()
    (folder / "_metadata").write_bytes(raw)
    for location in (folder.as_uri(), str(folder)):
        read = read_operators(location)
        assert read.uids == ("npost-state", "parse-uploads", "end")
        assert read.stateless == ("parse-uploads", "end") and read.max_parallelism == 128
    with pytest.raises(ValueError, match="not a Flink checkpoint"):
        uids_in_metadata(b"PK\x03\x04")
    with pytest.raises(ValueError, match="only file://"):
        read_operators("s3://bucket/savepoint-1")


def _checkpoint(root: Path, name: str) -> str:
    folder = root / name
    folder.mkdir()
    (folder / "_metadata").write_bytes(MAGIC + struct.pack(">iq", 6, 17) + _operator(
        "npost-state", "npost-state", murmur3_128(b"npost-state"), state=True))
    return folder.as_uri()


def test_a_checkpoint_subsumed_while_read_gives_way_to_the_newer_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = (tmp_path / "chk-4").as_uri()  # named newest, deleted when chk-5 completed
    newer = _checkpoint(tmp_path, "chk-5")
    answers = iter([newer])
    monkeypatch.setattr(flink_rest, "latest_state", lambda _url, _job: next(answers))
    state, operators = running_state("http://flink", "j1", gone)
    assert state == newer and operators.uids == ("npost-state",)
    # The REST API caches checkpoint statistics: it may name the deleted one a while longer.
    answers = iter([gone, gone, gone, newer])
    monkeypatch.setattr(flink_rest, "latest_state", lambda _url, _job: next(answers))
    now = [0.0]
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds

    state, _ = running_state("http://flink", "j1", clock=lambda: now[0], sleep=nap)
    assert state == newer and naps == [0.5, 0.5]
    # A state that stays the newest and cannot be read is an error once that has lasted
    # stale_s, not a loop.
    monkeypatch.setattr(flink_rest, "latest_state", lambda _url, _job: gone)
    now[0], naps[:] = 0.0, []
    with pytest.raises(OSError):
        running_state("http://flink", "j1", stale_s=3.0, clock=lambda: now[0], sleep=nap)
    assert sum(naps) == 3.0
    monkeypatch.setattr(flink_rest, "latest_state", lambda _url, _job: None)
    with pytest.raises(ValueError, match="no savepoint or checkpoint"):
        running_state("http://flink", "j1")


def _tree(root: Path, text: str) -> None:
    for package in ("feedline", "schemas", "pipelines"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text(text)


def test_code_version_follows_the_contents_and_a_release_is_a_copy(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    _tree(checkout, "a = 1\n")
    (checkout / "pipelines" / "__pycache__").mkdir()
    (checkout / "pipelines" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    first = code_version(checkout)
    assert code_version(checkout) == first and len(first) == 12
    stack = StackSettings(local={"state_dir": tmp_path / "state"})  # type: ignore[arg-type]
    version, folder = make_release(stack, checkout)
    assert version == first and (folder / "pipelines" / "__init__.py").read_text() == "a = 1\n"
    assert not (folder / "pipelines" / "__pycache__").exists()
    _tree(checkout, "a = 2\n")
    assert code_version(checkout) != first
    assert (folder / "pipelines" / "__init__.py").read_text() == "a = 1\n"  # kept as it was


def test_history_records_and_the_spec_round_trip(tmp_path: Path) -> None:
    stack = StackSettings(local={"state_dir": tmp_path})  # type: ignore[arg-type]
    spec = JOBS["notifications"]
    assert history.read(stack, "feedline-n") == [] and history.next_revision(stack, "x") == 1
    for revision, job_id in ((1, "a"), (2, "b")):
        history.append(stack, history.Deployment(
            revision, "apply", "feedline-n", job_id, "v1", None, 1, "savepoint", None, None,
            spec_record(spec)))
    records = history.read(stack, "feedline-n")
    assert [r.job_id for r in records] == ["a", "b"] and history.next_revision(
        stack, "feedline-n") == 3
    assert history.current(stack, "feedline-n", "a") == records[0]
    assert history.current(stack, "feedline-n", "zzz") is None
    again = spec_from_record(records[1].spec, tmp_path / "release")
    assert again.script == tmp_path / "release" / "pipelines" / "streaming" / (
        "notifications_job.py")
    assert (again.operator_uids, again.flags, again.reads, again.parallelism) == (
        spec.operator_uids, spec.flags, spec.reads, spec.parallelism)


def test_a_release_is_deployed_from_its_own_folder(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from feedline.settings import StreamingSettings
    from jobs import deploy as deploy_module
    from jobs.flink_submit import Submission, flink_run_argv

    seen: dict[str, object] = {}

    def submit(stack: StackSettings, script: Path, job_args: list[str], **kw: object) -> object:
        seen["argv"] = flink_run_argv(stack, script, job_args)
        handed = Path(job_args[job_args.index("--settings-file") + 1])
        seen["settings"] = handed.read_text()  # the client reads it before this returns
        seen["mode"] = handed.stat().st_mode & 0o777
        seen["file"] = handed
        return Submission("f" * 32, 0, "")

    monkeypatch.setattr(deploy_module, "running", lambda *_: [])
    monkeypatch.setattr(deploy_module, "submit_python_job", submit)
    monkeypatch.setattr(deploy_module, "connector_jar_urls", lambda _: ["file:///k.jar"])
    monkeypatch.setattr(deploy_module, "wait_for_state", lambda *_a, **_k: "RUNNING")
    monkeypatch.setattr(deploy_module, "running_tasks", lambda *_: True)
    stack = StackSettings(local={"state_dir": tmp_path})  # type: ignore[arg-type]
    spec = replace(JOBS["notifications"], parallelism=3, flags=("--dedup-window-s", "60"))
    release = tmp_path / "releases" / "abc"
    job_id = deploy_module.deploy(stack, StreamingSettings(), "notifications", suffix="-t",
                                  spec=spec, release=release, keep=True)
    argv = seen["argv"]
    assert isinstance(argv, list) and job_id == "f" * 32
    assert argv[argv.index("-pyfs") + 1] == str(release)
    assert argv[argv.index("-p") + 1] == "3"
    assert argv[argv.index("-py") + 1] == str(
        release / "pipelines" / "streaming" / "notifications_job.py")
    assert argv[-2:] == ["--dedup-window-s", "60"]
    # The settings (the stores' credentials) reach the job in an owner-only file, never on
    # the client's command line, and the file is gone once the job is submitted.
    assert "--settings-json" not in argv and seen["mode"] == 0o600
    assert not seen["file"].exists()  # type: ignore[attr-defined]
    settings = StreamingSettings.model_validate_json(str(seen["settings"]))
    assert settings.flink.parallelism == 3
    from jobs import keeper
    kept = keeper.kept(stack)["feedline-notifications-t"]
    assert (kept.release, kept.flags) == (str(release), ["--dedup-window-s", "60"])
    # The main record keeps its old fields only: an older keeper still reads it.
    import json
    record = json.loads(keeper.records_file(stack).read_text())["feedline-notifications-t"]
    assert set(record) == {"name", "suffix", "job_id", "restored_from", "streaming"}
    assert keeper.forget(stack, "feedline-notifications-t") and keeper.kept(stack) == {}
