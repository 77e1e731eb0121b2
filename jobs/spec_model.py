"""The job spec file: one YAML document per job, validated before anything is deployed.

Shaped like the Flink Kubernetes Operator's ``FlinkDeployment`` (entry point, parallelism,
upgrade mode, resources) plus what feedline needs to reason about a job: the topics it
reads and writes and the operator uids its graph sets (``feedctl jobs plan`` checks them
against the last savepoint). ``jobs/specs/*.yaml`` holds the platform's jobs; every error
is one line naming the file and the field, e.g.
``jobs/specs/fanout.yaml: parallelism: input should be greater than or equal to 1
(got 0)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EVENT_ROLES = ("uploads", "follows", "engagements")
"""The event-topic roles a job may read (their names come from ``KafkaSettings``)."""

UPGRADE_MODES = ("stateless", "last-state", "savepoint")

_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_MODULE = r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+$"
_TOPIC = r"^[A-Za-z0-9._-]{1,200}$"
_UID = r"^[a-z0-9][a-z0-9_.-]{0,79}$"


class SpecError(ValueError):
    """A spec file that cannot be used; the message is one line naming file and field."""


class Topics(BaseModel):
    """The topics a job consumes and produces."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reads: list[Literal["uploads", "follows", "engagements"]] = Field(alias="in", min_length=1)
    """Event-topic roles it consumes (``uploads``, ``follows``, ``engagements``)."""
    writes: list[Annotated[str, Field(pattern=_TOPIC)]] = Field(alias="out", default=[])
    """Topics it produces to, e.g. its dead letters ``uploads.dlq`` (stores are not topics)."""


class Resources(BaseModel):
    """What one TaskManager slot of the job needs (the operator's ``taskManager.resource``)."""

    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(gt=0, le=64)
    """CPU cores."""
    memory: Annotated[str, Field(pattern=r"^[1-9][0-9]*[mg]$")]
    """Memory, e.g. ``2048m`` or ``2g``."""


class JobSpecFile(BaseModel):
    """One job as declared in ``jobs/specs/NAME.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=_NAME)]
    """The job's name (the file's stem); Flink job and consumer group ``feedline-NAME``."""
    kind: Literal["streaming", "batch"]
    """``streaming`` (PyFlink, deployed by ``feedctl jobs apply``) or ``batch`` (Beam)."""
    description: Annotated[str, Field(min_length=1, max_length=200)]
    """One line: what it reads and what it makes."""
    entry_point: Annotated[str, Field(pattern=_MODULE)]
    """The job module (``pipelines.streaming.fanout_job``) whose ``run(argv)`` builds it."""
    parallelism: int = Field(ge=1, le=128)
    """Flink parallelism (at most the savepoints' max parallelism, 128); Beam workers."""
    topics: Topics
    resources: Resources
    upgrade_mode: Literal["stateless", "last-state", "savepoint"] | None = None
    """Streaming only: how an upgrade carries state over (the operator's upgradeMode):
    ``savepoint`` stops with a savepoint and starts from it, ``last-state`` cancels and
    starts from the newest retained checkpoint, ``stateless`` starts empty."""
    operator_uids: list[Annotated[str, Field(pattern=_UID)]] = []
    """Streaming only: the uids the job's graph sets with ``.uid(...)``."""
    flags: list[str] = []
    """Extra flags for the entry point (after the platform's own)."""
    runner: Literal["DirectRunner", "DataflowRunner", "FlinkRunner"] | None = None
    """Batch only: the Beam runner."""

    @model_validator(mode="after")
    def _kind_fields(self) -> JobSpecFile:
        if self.kind == "streaming":
            if self.upgrade_mode is None:
                raise ValueError("upgrade_mode: required for a streaming job "
                                 f"(one of {', '.join(UPGRADE_MODES)})")
            if not self.operator_uids:
                raise ValueError("operator_uids: a streaming job lists the uids its graph sets")
            if self.runner is not None:
                raise ValueError("runner: only a batch job has a Beam runner")
        else:
            if self.upgrade_mode is not None or self.operator_uids:
                raise ValueError("upgrade_mode/operator_uids: only a streaming job has them")
            if self.runner is None:
                raise ValueError("runner: required for a batch job")
        repeated = sorted({u for u in self.operator_uids if self.operator_uids.count(u) > 1})
        if repeated:
            raise ValueError(f"operator_uids: repeated {', '.join(repeated)}")
        return self


def _field(loc: tuple[Any, ...]) -> str:
    path = ".".join(str(part) for part in loc)
    return path.replace("topics.reads", "topics.in").replace("topics.writes", "topics.out")


def _message(error: Any) -> str:
    loc = _field(error["loc"])
    kind, text = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown field"
    if kind == "missing":
        return f"{loc}: required"
    if kind == "value_error":  # the model's own checks carry their field
        return str(text).removeprefix("Value error, ")
    shown = repr(error.get("input"))[:60]
    return f"{loc}: {text[:1].lower()}{text[1:]} (got {shown})" if loc else text


def entry_script(entry_point: str, root: Path) -> Path:
    """The file of an entry module under ``root``."""
    return root.joinpath(*entry_point.split(".")).with_suffix(".py")


def parse_spec(text: str, source: Path, root: Path) -> JobSpecFile:
    """Validate one spec's YAML text; ``SpecError`` (one line) when it is wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or "not YAML"
        raise SpecError(f"{source}: {where}{problem}") from None
    if not isinstance(document, dict):
        raise SpecError(f"{source}: a spec is a YAML mapping (name: ..., kind: ...)")
    try:
        spec = JobSpecFile.model_validate(document)
    except ValidationError as err:
        raise SpecError(f"{source}: " + "; ".join(_message(e) for e in err.errors())) from None
    if spec.name != source.stem:
        raise SpecError(f"{source}: name: {spec.name!r} differs from the file name "
                        f"{source.stem!r}")
    if not entry_script(spec.entry_point, root).is_file():
        raise SpecError(f"{source}: entry_point: no module {spec.entry_point} "
                        f"({entry_script(spec.entry_point, root)} does not exist)")
    return spec


def load_spec(path: Path, root: Path) -> JobSpecFile:
    """Read and validate one spec file."""
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read it ({err.strerror or err})") from None
    return parse_spec(text, path, root)


def is_spec_path(text: str) -> bool:
    """True when a command-line argument names a spec file rather than a job."""
    return text.endswith((".yaml", ".yml")) or "/" in text

