"""Write feedline's Grafana dashboards (JSON) into infra/grafana/dashboards/.

    python infra/grafana/generate.py          # rewrite the JSON files
    python infra/grafana/generate.py --check  # exit 1 if a file is not what this writes

One overview (traffic, latency, freshness, lag, dead letters, job health, stores) and one
dashboard per streaming job plus the archiver. Every query is plain PromQL without Grafana
variables (the data source is the only variable), so tests/unit/test_dashboards.py can
parse each one with promtool and tests/integration/test_monitoring.py can run each one on
the local Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The API's own endpoints, left out of traffic panels.
PROBES = '/metrics|/healthz|/readyz'
#: The streaming jobs: the name in jobs/specs.py, the Flink job name, the topics they read.
JOBS = {
    "fanout": ("feedline-fanout", ["uploads", "follows"]),
    "counters": ("feedline-counters", ["engagements", "follows", "uploads"]),
    "notifications": ("feedline-notifications", ["uploads", "engagements", "follows"]),
}


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = 0
        self.row_height = 0

    def row(self, title: str) -> None:
        """A full-width row header."""
        self.y += self.row_height
        self.x, self.row_height = 0, 0
        self.panels.append({"type": "row", "title": title, "collapsed": False,
                            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
                            "id": len(self.panels) + 1, "panels": []})
        self.y += 1

    def add(self, title: str, *queries: tuple[str, str], unit: str = "short",
            kind: str = "timeseries", width: int = 8, height: int = 8,
            description: str = "") -> None:
        """A panel of ``(expr, legend)`` queries."""
        if self.x + width > 24:
            self.y += self.row_height
            self.x, self.row_height = 0, 0
        panel: dict[str, Any] = {
            "type": kind,
            "title": title,
            "id": len(self.panels) + 1,
            "datasource": DATASOURCE,
            "gridPos": {"x": self.x, "y": self.y, "w": width, "h": height},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
                         "refId": chr(ord("A") + i)} for i, (expr, legend) in enumerate(queries)],
        }
        if description:
            panel["description"] = description
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)


def dashboard(uid: str, title: str, layout: Layout, tags: list[str]) -> dict[str, Any]:
    """A Grafana dashboard with a Prometheus data-source variable."""
    return {
        "uid": uid,
        "title": title,
        "tags": ["feedline", *tags],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "label": "Prometheus",
                                 "type": "datasource", "query": "prometheus",
                                 "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "links": [{"title": "Runbook", "type": "link", "url": "docs/RUNBOOK.md"}],
        "panels": layout.panels,
    }


def overview() -> dict[str, Any]:
    """Traffic, latency, freshness, lag, dead letters, job health and the stores at once."""
    p = Layout()
    p.row("API traffic")
    p.add("Requests/s by route",
          (f'sum by (route) (rate(feedline_http_requests_total{{route!~"{PROBES}"}}[5m]))',
           "{{route}}"), unit="reqps")
    p.add("5xx ratio",
          ('sum(rate(feedline_http_requests_total{status=~"5.."}[5m])) '
           '/ sum(rate(feedline_http_requests_total[5m]))', "5xx"), unit="percentunit",
          description="Alert ApiErrorRatioHigh above 5% for 5 minutes.")
    p.add("Responses/s by status",
          ('sum by (status) (rate(feedline_http_requests_total[5m]))', "{{status}}"),
          unit="reqps")
    p.add("Home feed latency (GET /v1/feed)",
          *[(f'histogram_quantile({q}, sum by (le) (rate('
             f'feedline_http_request_duration_seconds_bucket{{route="/v1/feed"}}[5m])))',
             f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99)], unit="s")
    p.add("p99 latency by route",
          (f'histogram_quantile(0.99, sum by (le, route) (rate('
           f'feedline_http_request_duration_seconds_bucket{{route!~"{PROBES}"}}[5m])))',
           "{{route}}"), unit="s")
    p.add("Degraded reads and 503s",
          ('sum by (store) (rate(feedline_degraded_reads_total[5m]))', "degraded: {{store}}"),
          ('sum by (dependency) (rate(feedline_dependency_unavailable_total[5m]))',
           "503: {{dependency}} unavailable"),
          ('sum(rate(feedline_rate_limited_total[5m]))', "429 rate limited"), unit="reqps",
          description="degraded: reads served without that store (Redis -> the CQL store).")
    p.row("Freshness and correctness")
    p.add("Post -> visible in a follower's feed",
          *[(f'histogram_quantile({q}, sum by (le) (rate(feedline_freshness_seconds_bucket[5m])))',
             f"p{round(q * 100)}") for q in (0.5, 0.99)], unit="s", width=24,
          description="From the freshness probe (feedline_freshness_seconds); empty until "
                      "the probe runs.")
    p.add("Verify: sampled users, last round",
          ('max by (state) (feedline_verify_users)', "{{state}}"),
          ('time() - max(feedline_verify_last_checked_timestamp_seconds)',
           "seconds since users were compared"), width=24,
          description="The scheduled verifier (python -m jobs.verifier): drifted = stores "
                      "disagreeing with the archive twice; skipped = users events past the "
                      "archive may have changed. Alerts VerifyDriftFound, VerifyNotChecking.")
    p.row("Streaming")
    p.add("Consumer lag by job",
          ('sum by (consumer) (feedline_kafka_consumer_lag)', "{{consumer}}"),
          description="Records not yet committed (Flink commits on checkpoints).")
    p.add("Dead letters (new in 10 min)",
          ('sum by (topic) (increase(feedline_dead_letters_total[10m]))', "{{topic}}"),
          ('sum by (topic) (feedline_dead_letter_depth)', "retained: {{topic}}"))
    p.add("Jobs running",
          ('max by (job_name) (flink_jobmanager_job_runningState{job_name=~"feedline-.+"})',
           "{{job_name}}"), kind="stat",
          description="1 while the job is RUNNING; no value: not on the cluster.")
    p.add("Restarts (1 h)",
          ('sum by (job_name) (increase(flink_jobmanager_job_numRestarts'
           '{job_name=~"feedline-.+"}[1h]))', "{{job_name}}"))
    p.add("Checkpoints (10 min)",
          ('sum by (job_name) (increase(flink_jobmanager_job_numberOfCompletedCheckpoints'
           '{job_name=~"feedline-.+"}[10m]))', "completed {{job_name}}"),
          ('sum by (job_name) (increase(flink_jobmanager_job_numberOfFailedCheckpoints'
           '{job_name=~"feedline-.+"}[10m]))', "failed {{job_name}}"))
    p.add("Archiver",
          ('sum(feedline_kafka_consumer_lag{consumer="archiver"})', "lag"),
          ('sum(rate(feedline_archive_records_total[5m]))', "records/s archived"))
    p.row("Stores and processes")
    p.add("Redis memory used / maxmemory",
          ('redis_memory_used_bytes / redis_memory_max_bytes', "{{server}}"),
          unit="percentunit")
    p.add("Redis evictions and commands/s",
          ('sum by (server) (rate(redis_evicted_keys_total[5m]))', "evicted {{server}}"),
          ('sum by (server) (rate(redis_commands_processed_total[5m]))', "commands {{server}}"),
          unit="ops")
    p.add("CQL store (Cassandra): heap, compactions, request errors",
          ('jvm_memory_used_bytes{job="cassandra", area="heap"} '
           '/ jvm_memory_max_bytes{job="cassandra", area="heap"}', "heap used / max"),
          ('cassandra_compaction_pending_tasks', "pending compactions"),
          ('sum(rate(cassandra_client_request_timeouts_total[5m]))', "timeouts/s"))
    p.add("Resident memory by service",
          ('feedline_stack_process_resident_bytes', "{{service}}"), unit="bytes")
    p.add("Disk free (state directory)",
          ('feedline_stack_filesystem_avail_bytes / feedline_stack_filesystem_size_bytes',
           "{{path}}"), unit="percentunit")
    p.add("Host memory available",
          ('feedline_host_memory_available_bytes / feedline_host_memory_total_bytes',
           "available"), unit="percentunit")
    p.add("Scrape targets up",
          ('sum by (job) (up)', "{{job}} up"), ('count by (job) (up)', "{{job}} total"),
          kind="stat")
    return dashboard("feedline-overview", "feedline overview", p, ["overview"])


def job_dashboard(name: str, flink_name: str, topics: list[str]) -> dict[str, Any]:
    """Health, progress, lag and the job's own counters for one streaming job."""
    job = f'job_name="{flink_name}"'
    p = Layout()
    p.row("Health")
    p.add("Running", (f'max(flink_jobmanager_job_runningState{{{job}}})', "running"),
          kind="stat", width=6)
    p.add("Time in RUNNING", (f'max(flink_jobmanager_job_runningTime{{{job}}})', "running"),
          unit="ms", kind="stat", width=6)
    p.add("Restarts (1 h)",
          (f'sum(increase(flink_jobmanager_job_numRestarts{{{job}}}[1h]))', "restarts"),
          kind="stat", width=6)
    p.add("Consumer lag",
          (f'sum(feedline_kafka_consumer_lag{{consumer="{name}"}})', "lag"),
          kind="stat", width=6)
    p.row("Checkpoints")
    p.add("Completed and failed (10 min)",
          (f'sum(increase(flink_jobmanager_job_numberOfCompletedCheckpoints{{{job}}}[10m]))',
           "completed"),
          (f'sum(increase(flink_jobmanager_job_numberOfFailedCheckpoints{{{job}}}[10m]))',
           "failed"))
    p.add("Last checkpoint duration",
          (f'max(flink_jobmanager_job_lastCheckpointDuration{{{job}}})', "duration"), unit="ms")
    p.add("Last checkpoint size",
          (f'max(flink_jobmanager_job_lastCheckpointSize{{{job}}})', "size"), unit="bytes")
    p.row("Throughput and pressure")
    p.add("Records in/s by task",
          (f'sum by (task_name) (rate(flink_taskmanager_job_task_numRecordsIn{{{job}}}[5m]))',
           "{{task_name}}"), unit="ops")
    p.add("Busy (ms/s) by task",
          (f'max by (task_name) (flink_taskmanager_job_task_busyTimeMsPerSecond{{{job}}})',
           "{{task_name}}"), unit="ms")
    p.add("Backpressured (ms/s) by task",
          (f'max by (task_name) (flink_taskmanager_job_task_backPressuredTimeMsPerSecond{{{job}}})',
           "{{task_name}}"), unit="ms")
    p.row("The job's own counters")
    p.add("Events and duplicates/s",
          (f'sum(rate(flink_taskmanager_job_task_operator_events{{{job}}}[5m]))', "events"),
          (f'sum(rate(flink_taskmanager_job_task_operator_duplicate_events{{{job}}}[5m]))',
           "duplicates skipped"), unit="ops")
    p.add("Effects written/s",
          (f'sum(rate(flink_taskmanager_job_task_operator_effects_written{{{job}}}[5m]))',
           "effects"),
          (f'sum(rate(flink_taskmanager_job_task_operator_write_batches{{{job}}}[5m]))',
           "batches"), unit="ops")
    p.add("Dead letters/s (this job's parsers)",
          (f'sum(rate(flink_taskmanager_job_task_operator_dead_letters{{{job}}}[5m]))',
           "dead letters"),
          (f'sum(rate(flink_taskmanager_job_task_operator_skipped_invalid{{{job}}}[5m]))',
           "skipped (another job's dead letters)"), unit="ops")
    p.row("Kafka")
    topic_re = "|".join(topics)
    p.add("Lag by topic and partition",
          (f'feedline_kafka_consumer_lag{{consumer="{name}"}}', "{{topic}}/{{partition}}"),
          width=12)
    p.add("Dead letters of its topics (new in 10 min)",
          ('sum by (topic) (increase(feedline_dead_letters_total'
           f'{{topic=~"({topic_re})\\\\.dlq"}}[10m]))', "{{topic}}"), width=12)
    return dashboard(f"feedline-job-{name}", f"feedline job: {name}", p, ["job", name])


def archiver_dashboard() -> dict[str, Any]:
    """The archiver: lag per partition, what it writes, whether it runs."""
    p = Layout()
    p.row("Archiver")
    p.add("Lag by topic and partition",
          ('feedline_kafka_consumer_lag{consumer="archiver"}', "{{topic}}/{{partition}}"),
          width=12)
    p.add("Records and objects/s",
          ('sum by (topic) (rate(feedline_archive_records_total[5m]))', "records {{topic}}"),
          ('sum by (topic) (rate(feedline_archive_objects_total[5m]))', "objects {{topic}}"),
          unit="ops", width=12)
    p.add("Seconds since the last write",
          ('time() - feedline_archive_last_write_timestamp_seconds', "since last write"),
          unit="s", kind="stat", width=8)
    p.add("Process up", ('up{job="archiver"}', "up"), kind="stat", width=8)
    p.add("Restarts by the supervisor",
          ('feedline_stack_service_restarts_total{service="archiver"}', "restarts"),
          kind="stat", width=8)
    return dashboard("feedline-job-archiver", "feedline job: archiver", p, ["job", "archiver"])


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard by file name."""
    out = {"overview.json": overview(), "job-archiver.json": archiver_dashboard()}
    for name, (flink_name, topics) in JOBS.items():
        out[f"job-{name}.json"] = job_dashboard(name, flink_name, topics)
    return out


def render(board: dict[str, Any]) -> str:
    """The file's text."""
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """Write the files, or with ``--check`` report the stale ones."""
    stale = []
    for name, board in dashboards().items():
        path = OUT / name
        text = render(board)
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run python infra/grafana/generate.py): {', '.join(stale)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
