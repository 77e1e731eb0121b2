"""``feedctl jobs new NAME``: a streaming job, its spec, its unit test and integration twin.

The files come from ``jobs/templates/`` (``string.Template``, ``$name`` and friends): a
job module counting events per key from the topics it reads into an output topic, built
on ``job_graph`` (Kafka sources parsed into events, checkpoints), keyed state with a
metric, a ``.uid`` on every step; its spec listing those uids; a unit test of its pure
rule; an integration twin applying it in a sandbox on the local cluster.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from feedline.settings import REPO_ROOT
from jobs.spec_model import EVENT_ROLES

TEMPLATES = Path(__file__).resolve().parent / "templates"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class ScaffoldError(ValueError):
    """The name or the roles cannot be scaffolded; one line."""


def _targets(name: str, root: Path) -> dict[str, Path]:
    return {"job.py.tmpl": root / "pipelines" / "streaming" / f"{name}_job.py",
            "spec.yaml.tmpl": root / "jobs" / "specs" / f"{name}.yaml",
            "test_unit.py.tmpl": root / "tests" / "unit" / f"test_{name}_job.py",
            "test_integration.py.tmpl": root / "tests" / "integration" / f"test_{name}_job.py"}


def scaffold(name: str, reads: list[str], root: Path | None = None, *,
             dry_run: bool = False) -> list[Path]:
    """Write the four files of a new job under ``root``; returns their paths."""
    root = root or REPO_ROOT
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(f"job name {name!r}: lower case letters, digits and _, "
                            "starting with a letter")
    unknown = [role for role in reads if role not in EVENT_ROLES]
    if unknown or not reads:
        raise ScaffoldError(f"--reads {','.join(reads)}: each one of {', '.join(EVENT_ROLES)}")
    targets = _targets(name, root)
    taken = [str(path) for path in targets.values() if path.exists()]
    if taken:
        raise ScaffoldError(f"job {name!r} exists already: {', '.join(taken)}")
    roles = list(dict.fromkeys(reads))
    values = {
        "name": name,
        "reads_text": " + ".join(roles),
        "reads_py": "".join(f'"{role}", ' for role in roles).rstrip(" "),
        "reads_yaml": ", ".join(roles),
        "uids": ", ".join([*(f"parse-{role}" for role in roles),
                           f"{name}-keys", f"{name}-state", f"{name}-out"]),
    }
    if dry_run:
        return list(targets.values())
    for template, path in targets.items():
        text = Template((TEMPLATES / template).read_text()).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(targets.values())
