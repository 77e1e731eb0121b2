"""The images: what they install, and where they put what docker-compose.yml points at.

infra/docker/api/Dockerfile installs ``project.dependencies`` (no extras) and runs the API,
`feedctl db migrate` and `feedctl archive run`. Without a Docker engine no image is built
here, so the tests read the Dockerfiles and work from the installed distributions' metadata:
the core's requirement closure must leave out the pipeline engines and the test tools, and
the modules those three commands load must import with every other distribution blocked.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from feedline.settings import REPO_ROOT, ApiSettings
from jobs.localstack.api import HTTP_PROTOCOL

FLINK_DOCKERFILE = REPO_ROOT / "infra" / "docker" / "flink" / "Dockerfile"
API_DOCKERFILE = REPO_ROOT / "infra" / "docker" / "api" / "Dockerfile"
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
CORE = PROJECT["dependencies"]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
#: What the API image must not carry.
HEAVY = {"apache-flink", "apache-beam", "great-expectations", "pytest", "gcp-storage-emulator"}
#: Installed in the python base image itself.
BASE_IMAGE = {"pip", "setuptools", "wheel"}
#: What the image's three commands import first.
API_IMAGE_MODULES = ["serving.main", "serving.http_protocol", "jobs.feedctl.main",
                     "jobs.feedctl.db", "feedline.archive.archiver", "feedline.archive.lag"]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuations joined."""
    found, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
            pending = ""
    return found


def arg_default(dockerfile: Path, name: str) -> str:
    return next(rest.split("=", 1)[1] for kw, rest in instructions(dockerfile)
                if kw == "ARG" and rest.startswith(f"{name}="))


def core_distributions(requirements: Iterable[str]) -> set[str]:
    """Canonical names of every distribution ``requirements`` pull in (installed metadata)."""
    seen: set[tuple[str, str]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        for extra in ("", *sorted(req.extras)):
            key = (canonicalize_name(req.name), extra)
            if key in seen:
                continue
            seen.add(key)
            for line in metadata.distribution(req.name).requires or []:
                sub = Requirement(line)
                if sub.marker is None or sub.marker.evaluate({"extra": extra}):
                    todo.append(Requirement(str(sub).split(";")[0]))
    return {name for name, _ in seen}


# Runs in a fresh interpreter: a finder ahead of the usual ones refuses any module whose file
# belongs to an installed distribution outside the allowed set.
_BLOCKING_IMPORTER = """
import importlib, importlib.abc, importlib.machinery, importlib.metadata as md, json, sys
from packaging.utils import canonicalize_name
allowed, modules, must_fail = json.loads(sys.argv[1])
owner = {}
for dist in md.distributions():
    name = canonicalize_name(dist.metadata["Name"])
    if name not in allowed:
        owner.update((str(dist.locate_file(f)), name) for f in dist.files or ())

class OnlyAllowed(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.origin in owner:
            # As if not installed: optional imports catch ModuleNotFoundError.
            raise ModuleNotFoundError(f"{fullname} belongs to {owner[spec.origin]}",
                                      name=fullname)
        return None

sys.meta_path.insert(0, OnlyAllowed())
report = {"failed": {}, "blocked": []}
for module in modules:
    try:
        importlib.import_module(module)
    except Exception as error:
        report["failed"][module] = repr(error)
for module in must_fail:
    try:
        importlib.import_module(module)
    except ImportError:
        report["blocked"].append(module)
print(json.dumps(report))
"""


def import_with_only(allowed: set[str], modules: list[str], must_fail: list[str]) -> Any:
    """Import ``modules`` in a subprocess where only ``allowed`` distributions load."""
    result = subprocess.run(
        [sys.executable, "-c", _BLOCKING_IMPORTER,
         json.dumps([sorted(allowed), modules, must_fail])],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_core_dependencies_leave_out_the_engines_and_test_tools() -> None:
    core = core_distributions(CORE)
    assert {"fastapi", "uvicorn", "kafka-python", "scylla-driver", "redis"} <= core
    assert core & HEAVY == set()


def test_the_api_image_modules_import_with_the_core_alone() -> None:
    allowed = core_distributions(CORE) | BASE_IMAGE | {"feedline"}
    report = import_with_only(allowed, API_IMAGE_MODULES,
                              must_fail=["pyflink", "apache_beam", "great_expectations", "pytest"])
    assert report["failed"] == {}
    # The blocker is live: what the dev environment has but the core lacks does not load.
    assert sorted(report["blocked"]) == ["apache_beam", "great_expectations", "pyflink", "pytest"]


def test_the_blocker_reports_a_module_outside_the_allowed_set() -> None:
    allowed = core_distributions(CORE) - {"orjson"} | BASE_IMAGE | {"feedline"}
    report = import_with_only(allowed, ["serving.main"], must_fail=[])
    assert "orjson" in report["failed"].get("serving.main", "")


def test_the_api_image_installs_the_core_and_serves_on_the_published_port() -> None:
    steps = instructions(API_DOCKERFILE)
    runs = " ".join(rest for kw, rest in steps if kw == "RUN")
    assert "['dependencies']" in runs and "optional-dependencies" not in runs
    assert "pip install --no-deps ." in runs and ".[" not in runs
    argv = json.loads(next(rest for kw, rest in steps if kw == "CMD"))
    assert argv[:2] == ["uvicorn", "serving.main:app"]
    port = int(argv[argv.index("--port") + 1])
    assert port == ApiSettings().port
    assert any(entry.endswith(f":{port}") for entry in COMPOSE["services"]["api"]["ports"])


def test_the_api_image_fails_closed_without_its_configuration(tmp_path: Path) -> None:
    # The image sets no environment and no secret: `serving.main:app` started with only the
    # image's ENV (and no .env in its empty WORKDIR) must refuse the development placeholder.
    image_env = " ".join(rest for kw, rest in instructions(API_DOCKERFILE) if kw == "ENV")
    assert "FEEDLINE_" not in image_env
    # ...and it serves through the protocol that bounds request heads (slowloris).
    assert f"UVICORN_HTTP={HTTP_PROTOCOL}" in image_env.split()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", "import serving.main as m; m.app"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert "FEEDLINE_API__JWT_SECRET is the development placeholder" in done.stderr
    assert "'prod'" in done.stderr


def test_the_flink_image_holds_the_jars_and_interpreter_compose_names() -> None:
    copies = {rest.split()[-1].rstrip("/"): rest for kw, rest in instructions(FLINK_DOCKERFILE)
              if kw == "COPY" and rest.startswith("--from=")}
    env = COMPOSE["services"]["flink-jobs"]["environment"]
    assert "--from=kafka-connector" in copies[env["FEEDLINE_FLINK__JARS_DIR"]]
    python = Path(env["FEEDLINE_FLINK__PYTHON_EXECUTABLE"])
    assert "--from=python" in copies[str(python.parent)]
    checks = " ".join(rest for kw, rest in instructions(FLINK_DOCKERFILE) if kw == "RUN")
    assert f"{python.name} -c \"import" in checks  # the build imports pyflink with it


def test_image_pins_agree_with_the_python_and_maven_pins() -> None:
    assert arg_default(FLINK_DOCKERFILE, "FLINK_IMAGE").startswith("flink:2.2.")
    for dockerfile in (FLINK_DOCKERFILE, API_DOCKERFILE):
        assert arg_default(dockerfile, "PYTHON_IMAGE").startswith("python:3.11.")
        assert "://" not in dockerfile.read_text(), dockerfile  # no URL, no registry host
    flink_pin = PROJECT["optional-dependencies"]["streaming"][0]
    assert ("RUN", f"pip install -c constraints.txt {flink_pin}") in instructions(
        FLINK_DOCKERFILE)
    pom = ET.parse(REPO_ROOT / "infra" / "maven" / "pom.xml").getroot()
    version = pom.find(".//{*}flink.kafka.connector.version")
    assert version is not None
    assert arg_default(FLINK_DOCKERFILE, "KAFKA_CONNECTOR_VERSION") == version.text
    for name, service in COMPOSE["services"].items():
        assert not service.get("image", "").endswith(":latest"), name
