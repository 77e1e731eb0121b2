"""Running the suites with Great Expectations 1.x and reading back which rows failed.

``SuiteRunner`` holds one ephemeral data context with a pandas data source; each suite gets a
dataframe asset, a whole-dataframe batch definition and a validation definition, created on
first use and run with the frame as a batch parameter. Results ask for ``COMPLETE`` detail
with ``__row`` (or ``__parent`` for array items) as the unexpected-index column, which is how
failing records are found. With a results directory, each validation result is written as
JSON and Data Docs are built there at the end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from feedline.archive.layout import Partition
from pipelines.quality.frame import RecordFrames
from pipelines.quality.suites import PARENT, ROW, SCHEMA, SuiteSpec, role_suites


@dataclass
class Outcome:
    """Failures of one validation of a topic's frames."""

    frames: RecordFrames
    failures: dict[Partition, dict[str, int]] = field(default_factory=dict)
    """Per partition: failed expectation label -> failing records."""
    bad_rows: dict[int, list[str]] = field(default_factory=dict)
    """``__row`` -> labels of the expectations it failed."""
    table_failures: list[str] = field(default_factory=list)
    """Failures not attributable to rows (an expectation that raised)."""

    def bad_rows_in(self, partition: Partition) -> list[int]:
        """Flagged rows of one partition."""
        return [r for r in self.bad_rows if self.frames.sources[r].partition == partition]


class SuiteRunner:
    """One GE ephemeral context; validation definitions created once per suite."""

    def __init__(self, results_dir: Path | None = None) -> None:
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.results_dir = results_dir
        self.source = self.context.data_sources.add_pandas("archive")
        self._definitions: dict[str, Any] = {}
        self._written = 0
        if results_dir is not None:
            results_dir.mkdir(parents=True, exist_ok=True)
            self.context.add_data_docs_site("feedline", {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(results_dir / "data_docs")},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            })

    def _definition(self, spec: SuiteSpec) -> Any:
        found = self._definitions.get(spec.name)
        if found is None:
            asset = self.source.add_dataframe_asset(name=spec.name)
            batch = asset.add_batch_definition_whole_dataframe(f"{spec.name} partition rows")
            suite = self.context.suites.add(spec.build())
            found = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=spec.name, data=batch, suite=suite))
            self._definitions[spec.name] = found
        return found

    def run(self, spec: SuiteSpec, frame: pd.DataFrame, index_column: str,
            label: str) -> Any:
        """Validate ``frame`` with one suite; returns the GE suite validation result."""
        result = self._definition(spec).run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE",
                           "unexpected_index_column_names": [index_column],
                           "return_unexpected_index_query": False},
        )
        if self.results_dir is not None:
            self._written += 1
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{label}.{spec.name}")
            path = self.results_dir / "validations" / f"{self._written:04d}-{safe}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result.to_json_dict(), indent=1, default=str))
        return result

    def finish(self) -> None:
        """Build Data Docs from every result of this runner (when writing results)."""
        if self.results_dir is not None and self._written:
            self.context.build_data_docs(site_names=["feedline"])


def _rows_of(unexpected: Iterable[Any], column: str) -> list[int]:
    rows = []
    for item in unexpected:
        value = item[column] if isinstance(item, dict) else item
        rows.append(int(value))
    return rows


def _describe(spec: SuiteSpec, config: Any) -> str:
    kwargs = config.kwargs
    column = kwargs.get("column") or kwargs.get("column_list") or (
        f"{kwargs.get('column_A')}>{kwargs.get('column_B')}")
    return f"{spec.name}: {config.type}({column})"


def _subset(frames: RecordFrames, spec: SuiteSpec) -> tuple[pd.DataFrame, str]:
    frame = frames.frame
    if spec.child is not None:
        items = frames.children[spec.child]
        rows = frame.loc[frame[SCHEMA] == spec.schema, ROW]
        return items[items[PARENT].isin(rows)], PARENT
    if spec.schema is not None:
        return frame[frame[SCHEMA] == spec.schema], ROW
    return frame, ROW


def validate_frames(runner: SuiteRunner, frames: RecordFrames, *, label: str) -> Outcome:
    """Run every suite of the frames' role on its rows; collect failing rows per partition."""
    outcome = Outcome(frames)
    for spec in role_suites(frames.role):
        subset, index_column = _subset(frames, spec)
        if subset.empty:
            continue
        result = runner.run(spec, subset, index_column, label)
        for item in result.results:
            if item.success:
                continue
            name = _describe(spec, item.expectation_config)
            if item.exception_info and item.exception_info.get("raised_exception"):
                message = item.exception_info.get("exception_message")
                outcome.table_failures.append(f"{name} raised: {message}")
                continue
            rows = _rows_of(item.result.get("unexpected_index_list") or (), index_column)
            if not rows:
                outcome.table_failures.append(f"{name} failed without failing rows")
            for row in set(rows):
                outcome.bad_rows.setdefault(row, []).append(name)
                partition = frames.sources[row].partition
                per = outcome.failures.setdefault(partition, {})
                per[name] = per.get(name, 0) + 1
    return outcome
