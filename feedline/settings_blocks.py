"""The component blocks of feedline's settings: one per endpoint or process kind.

``feedline.settings`` assembles them into one model per deployable (and re-exports them);
a block is named the same way in every deployable, e.g. ``FEEDLINE_KAFKA__…`` always
configures ``KafkaSettings``. Unknown keys are errors; field docstrings are descriptions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The JWT secret shipped for local development; refused unless the environment is
#: explicitly dev or test (the API's default environment is prod).
DEV_JWT_SECRET = "feedline-development-secret-change-me-now"  # noqa: S105 (a documented placeholder)
#: The CQL role and Redis ACL user of the local stack, with development passwords: the
#: local stack enforces them (Cassandra's PasswordAuthenticator, a Redis ACL with the
#: default user off), so every client is exercised with credentials. Set real ones
#: (FEEDLINE_CQL__PASSWORD, the password in FEEDLINE_REDIS__URL) anywhere else.
DEV_CQL_USER = "feedline"
DEV_CQL_PASSWORD = "feedline-development-cql-password"  # noqa: S105 (documented dev default)
DEV_REDIS_URL = "redis://feedline:feedline-development-redis-password@127.0.0.1:6379/0"

REPO_ROOT = Path(__file__).resolve().parent.parent


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for status lines and errors)."""
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in auth:
        return url
    return f"{scheme}://{auth.partition(':')[0]}:***@{host}"


class _Block(BaseModel):
    """A settings block: unknown keys are errors, field docstrings are descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class KafkaSettings(_Block):
    """Where the event log is and what its topics are called."""

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of Kafka brokers."""
    uploads_topic: str = "uploads"
    """Topic of post created / deleted events, keyed by author."""
    follows_topic: str = "follows"
    """Topic of follow / unfollow events, keyed by followee."""
    engagements_topic: str = "engagements"
    """Topic of like / unlike / comment / comment-delete events, keyed by post."""
    media_topic: str = "media-uploads"
    """Topic of completed media uploads the media worker processes, keyed by media id (not an
    event topic: its messages are ``feedline.media.messages``, not feed events)."""
    dlq_suffix: str = ".dlq"
    """Suffix of each topic's dead-letter topic."""
    partitions: int = Field(default=3, ge=1, le=256)
    """Partitions per event topic (dead-letter topics get one)."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How clients talk to the brokers: TLS (``SSL``), SASL authentication, or both."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    """SASL mechanism (with ``SASL_PLAINTEXT`` or ``SASL_SSL``)."""
    sasl_username: str | None = None
    """SASL user (required with a ``SASL_*`` protocol)."""
    sasl_password: str = Field(default="", repr=False)
    """SASL password."""
    ssl_cafile: str | None = None
    """CA bundle (PEM) the brokers' certificates are verified with (``SSL``, ``SASL_SSL``);
    None: the system's trust store."""

    @model_validator(mode="after")
    def _sasl_needs_a_user(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not self.sasl_username:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username "
                             "(FEEDLINE_KAFKA__SASL_USERNAME) and sasl_password")
        return self

    def client_options(self) -> dict[str, Any]:
        """kafka-python's connection options: the brokers and, when set, TLS and SASL."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.security_protocol != "PLAINTEXT":
            options["security_protocol"] = self.security_protocol
        if self.security_protocol.startswith("SASL_"):
            options.update(sasl_mechanism=self.sasl_mechanism,
                           sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        if self.ssl_cafile and self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_cafile"] = self.ssl_cafile
        return options

    def java_properties(self) -> dict[str, str]:
        """The same for Java clients (Flink's Kafka connector).

        ``bootstrap.servers``, and the ``security.protocol``, ``sasl.*`` and
        ``ssl.truststore.*`` properties when set.
        """
        props = {"bootstrap.servers": self.bootstrap_servers}
        if self.security_protocol == "PLAINTEXT":
            return props
        props["security.protocol"] = self.security_protocol
        if self.security_protocol.startswith("SASL_"):
            module = ("org.apache.kafka.common.security.plain.PlainLoginModule"
                      if self.sasl_mechanism == "PLAIN"
                      else "org.apache.kafka.common.security.scram.ScramLoginModule")
            user = json.dumps(self.sasl_username)  # JAAS quotes like JSON strings
            secret = json.dumps(self.sasl_password)
            props["sasl.mechanism"] = self.sasl_mechanism
            props["sasl.jaas.config"] = f"{module} required username={user} password={secret};"
        if self.ssl_cafile and self.security_protocol in ("SSL", "SASL_SSL"):
            props["ssl.truststore.type"] = "PEM"
            props["ssl.truststore.location"] = self.ssl_cafile
        return props

    @property
    def event_topics(self) -> tuple[str, str, str]:
        """The three event topics, in a fixed order."""
        return (self.uploads_topic, self.follows_topic, self.engagements_topic)

    def topic_roles(self) -> dict[str, str]:
        """Each event topic's name mapped to its role (uploads, follows, engagements)."""
        return {self.uploads_topic: "uploads", self.follows_topic: "follows",
                self.engagements_topic: "engagements"}

    def dlq_topic(self, topic: str) -> str:
        """The dead-letter topic of ``topic``."""
        return f"{topic}{self.dlq_suffix}"


class CqlSettings(_Block):
    """The CQL store (ScyllaDB in production, Cassandra 5 locally)."""

    contact_points: tuple[str, ...] = ("127.0.0.1",)
    """Hosts the driver first connects to."""
    port: int = 9042
    """Native-protocol port."""
    keyspace: str = "feedline"
    """Keyspace holding every feedline table."""
    replication_factor: int = Field(default=1, ge=1)
    """SimpleStrategy replication factor used when the keyspace is created."""
    protocol_version: int = 4
    """Native protocol version (4 is what ScyllaDB speaks)."""
    reconnect_max_delay_s: float = Field(default=5.0, gt=0)
    """Longest wait between the driver's attempts to reconnect to a node it saw go down
    (exponential from 0.5 s). The driver's own default grows to 10 minutes, which leaves a
    process unable to use a node for minutes after the node came back."""
    username: str | None = DEV_CQL_USER
    """Role to log in as (PasswordAuthenticator, ScyllaDB's or Cassandra's); None or empty:
    no authentication (a cluster with AllowAllAuthenticator)."""
    password: str = Field(default=DEV_CQL_PASSWORD, repr=False)
    """The role's password (the default is the local stack's development one)."""
    tls_ca_file: str | None = None
    """CA bundle (PEM) to verify the nodes' certificates with: set it to speak TLS to the
    native port (client_encryption_options on the nodes); None: plain TCP."""
    tls_server_hostname: str | None = None
    """Name the nodes' certificates are checked against (default: each contact point)."""


class RedisSettings(_Block):
    """The serving cache."""

    url: str = Field(default=DEV_REDIS_URL, repr=False)
    """redis-py connection URL: ``redis://USER:PASSWORD@HOST:PORT/DB`` logs in as an ACL user
    (``AUTH USER PASSWORD``; no user: the ``default`` user), ``rediss://`` speaks TLS (add
    ``?ssl_ca_certs=/path/ca.pem``; ``ssl_cert_reqs=required`` is the default). The default is
    the local stack's ACL user with its development password."""
    key_prefix: str = "fl"
    """Prefix of every feedline key (tests use a unique one each)."""
    cluster: bool = False
    """``url`` names one node of a Redis Cluster: keys take the hash-tagged layout
    (``schemas.redis_keys``) and the feed page runs one step per slot group, pipelined per
    node (``feedline.stores.cluster_cache``). False: one Redis, the page in one script."""
    guards_url: str | None = None
    """Redis of the API's request guards (rate-limit counters, Idempotency-Key records), which
    must not be evicted: run it with ``maxmemory-policy noeviction`` (every guard key has a
    TTL and a bounded size). None: the cache at ``url``, whose LRU eviction can drop them."""
    read_budget_s: float = Field(default=0.5, gt=0)
    """Most time one feed read of the API waits on the cache, all its calls together (each
    is also bounded by ``api.redis_timeout_s``); past it the page comes from the CQL store,
    marked ``X-Feed-Degraded: redis``. A slow Redis costs a read at most this."""


class StorageSettings(_Block):
    """Object storage: media and the raw event archive."""

    emulator_host: str | None = "http://127.0.0.1:9023"
    """GCS emulator URL (scheme required); empty or None means real Google Cloud Storage."""
    project: str = "feedline-local"
    """Google Cloud project id."""
    media_bucket: str = "feedline-media"
    """Bucket for uploaded photos and videos."""
    archive_bucket: str = "feedline-archive"
    """Bucket for the raw event archive (the source of truth for rebuilds)."""

    @field_validator("emulator_host", mode="before")
    @classmethod
    def _empty_means_real_gcs(cls, value: object) -> object:
        return None if value in ("", "none", "None") else value


class FlinkSettings(_Block):
    """The Flink cluster the streaming jobs run on."""

    rest_url: str = "http://127.0.0.1:8081"
    """Flink REST endpoint (JobManager)."""
    parallelism: int = Field(default=1, ge=1)
    """Default parallelism of submitted jobs."""
    checkpoint_interval_ms: int = Field(default=5000, ge=100)
    """Checkpoint interval of the streaming jobs."""
    restart_initial_backoff_ms: int = Field(default=1000, ge=1)
    """First wait before a failed streaming job restarts; each failure in a row doubles it
    (``restart_options``), up to ``restart_max_backoff_ms``."""
    restart_max_backoff_ms: int = Field(default=10_000, ge=1)
    """Longest wait between restarts while a dependency stays down: how long after it comes
    back a job may still wait to restart. The jobs restart without a limit on attempts;
    ``StreamingJobRestartStorm`` alerts on-call instead."""
    python_bundle_time_ms: int = Field(default=50, ge=1)
    """``python.fn-execution.bundle.time``: longest a Python operator holds elements before
    finishing the bundle (a bound on each Python hop's latency)."""
    python_bundle_size: int = Field(default=100_000, ge=1)
    """``python.fn-execution.bundle.size``: most elements in one bundle."""
    python_execution_mode: Literal["process", "thread"] = "process"
    """``python.execution-mode``: Python workers as processes (Beam harness) or in the
    TaskManager's JVM through PEMJA (``thread``)."""
    state_backend: Literal["hashmap", "rocksdb"] = "hashmap"
    """``state.backend.type`` of the streaming jobs: keyed state on the TaskManagers' heap
    (``hashmap``) or in RocksDB, with incremental checkpoints (state beyond memory); the
    two side by side: docs/BENCHMARKS.md."""
    writer_flush_ms: int = Field(default=100, ge=1)
    """The streaming writers write what waited this long (``BufferedWriteEffects``)."""
    writer_flush_effects: int = Field(default=2000, ge=1)
    """... or as soon as this many effects are buffered."""
    writer_slot_group: str | None = None
    """The streaming writers' slot sharing group; None: the default group, shared with the
    rule operators. Named, the writers take slots of their own, so in process mode they run
    in Python workers of their own (two processes, two interpreter locks, at parallelism 1)
    and a job needs twice the slots (docs/BENCHMARKS.md measures both)."""
    task_slots: int = Field(default=6, ge=1)
    """Task slots of the local TaskManager: the three jobs of ``make run`` (one slot each at
    parallelism 1), a test's sandbox copies of two of them and one to spare."""
    jars_dir: Path = REPO_ROOT / ".local" / "jars" / "flink"
    """Folder whose jars (the Kafka connector) are added to every submitted job; read by the
    submitting `flink` client, which ships them to the cluster with the job."""
    python_thread_paths: list[str] | None = None
    """Thread mode only (``python.pythonpath``): folders put on the path of the interpreter
    embedded in the TaskManager. PyFlink 2.2's PEMJA starts it with the base installation's
    prefix, so a virtualenv's site-packages (PyFlink, PEMJA itself) are not on its path; None:
    the submitting interpreter's site-packages (the local stack's workers share it)."""
    python_executable: str | None = None
    """Interpreter of the jobs' Python workers on the TaskManagers (``flink run -pyexec``), a
    path on the cluster's machines; None: the submitter's own (the local stack shares it)."""
    client_conf_dir: Path | None = None
    """Configuration folder of the submitting `flink` client (the cluster's own, in an image
    of it); None: the local stack's, regenerated for each submission."""
    savepoint_dir: str | None = None
    """Where savepoints are written, a URI the JobManager and TaskManagers can all reach;
    None: ``file://<local.state_dir>/flink/savepoints`` (the local stack's)."""
    ship_python_paths: list[str] = Field(default_factory=list)
    """Folders or files shipped with each job (``flink run -pyfs``), put first on the Python
    workers' path: how a checkout's code reaches a cluster (JSON list in the environment,
    e.g. ``FEEDLINE_FLINK__SHIP_PYTHON_PATHS='["/src/feedline-checkout"]'``). Flink zips each
    folder whole: never one holding the local stack's state (``.local``), whose socket and
    temp file names it cannot zip."""


class FeedSettings(_Block):
    """The feed rules' knobs."""

    timeline_cap: int = Field(default=800, ge=1)
    """Newest entries kept per timeline in Redis."""
    celebrity_threshold: int = Field(default=10_000, ge=1)
    """Authors with more followers than this are not fanned out (outbox, merged on read)."""
    follow_merge_limit: int = Field(default=200, ge=0)
    """How many of a followee's recent posts a new follow merges into the timeline."""
    lateness_bound_s: float | None = Field(default=None, gt=0)
    """An event that reached Kafka (its record's broker append time) more than this after
    its own ``event_time`` is refused: the streaming jobs dead-letter it (``too_late``),
    the rebuild skips it (``feedline.rules.retention``). None: none is refused (the default;
    the sample workload's events carry fixed times, which any bound refuses as they age)."""


class ApiSettings(_Block):
    """The HTTP API process."""

    host: str = "127.0.0.1"
    """Interface the API binds to."""
    port: int = 8000
    """TCP port of the API."""
    jwt_secret: str = DEV_JWT_SECRET
    """HS256 secret for bearer tokens; the placeholder is refused unless the environment is
    dev or test."""
    jwt_max_bytes: int = Field(default=4096, ge=256, le=64 * 1024)
    """Longest bearer token accepted (401 past it, checked before decoding)."""
    jwt_max_lifetime_s: int = Field(default=30 * 24 * 3600, ge=60)
    """Longest a token may be valid for: its ``exp`` at most this far ahead (and past its
    ``iat``); a longer-lived token gets 401."""
    jwt_issuer: str | None = None
    """Required ``iss`` claim of bearer tokens; None: not checked."""
    jwt_audience: str | None = None
    """Required ``aud`` claim of bearer tokens; None: not checked (a token naming an
    audience is then refused)."""
    rate_limit_per_minute: int = Field(default=600, ge=1)
    """Requests per user per minute before 429 (per worker while Redis is down)."""
    anonymous_rate_limit_per_minute: int = Field(default=300, ge=1)
    """Unauthenticated requests (``/readyz``, ``/metrics``, bad tokens) per client IP per
    minute before 429 (per worker while Redis is down)."""
    max_concurrent_requests: int = Field(default=512, ge=1)
    """Requests one worker handles at once; past it 503 with Retry-After."""
    request_deadline_s: float = Field(default=15.0, gt=0)
    """Longest one request may take before 504 (above the Kafka and CQL timeouts)."""
    max_header_bytes: int = Field(default=16 * 1024, ge=4096)
    """Largest request head (request line and headers); past it 431 and the connection
    closes."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """Longest a client may take to send a request's head once it starts (or once it
    connects); past it the connection closes (slowloris)."""
    workers: int = Field(default=1, ge=1, le=64)
    """uvicorn worker processes the local stack starts (metrics are then multi-process)."""
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest accepted request body; bigger ones get 413 (media go to object storage)."""
    media_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    """Largest photo or video a client may announce for a signed upload."""
    upload_url_ttl_s: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    """Lifetime of a signed upload URL (V4 signatures allow at most 7 days)."""
    signing_credentials_file: Path | None = None
    """Service-account JSON key that signs upload URLs; None: the runtime's credentials
    (IAM signBlob), or a throwaway local key when storage.emulator_host is set."""
    media_base_url: str | None = None
    """Public base URL of media objects (a CDN), ``<base>/<object name>``; None: the
    emulator's or storage.googleapis.com's URL of the object."""
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    """How long an Idempotency-Key maps to the event it produced."""
    idempotency_max_keys_per_user: int = Field(default=1000, ge=1)
    """Most Idempotency-Key records one user keeps; one more drops the user's oldest."""
    kafka_max_block_ms: int = Field(default=1500, ge=100)
    """Longest a produce call may wait for broker metadata before the write gets 503."""
    kafka_delivery_timeout_ms: int = Field(default=4000, ge=500)
    """Longest a produce may wait for the acks=all acknowledgement before 503."""
    kafka_retry_after_s: int = Field(default=5, ge=1)
    """Retry-After of a 503 when Kafka is unreachable; writes fail fast for this long."""
    redis_timeout_s: float = Field(default=0.5, gt=0)
    """Socket timeout of Redis calls; past it a read falls back to the CQL store."""
    cql_timeout_s: float = Field(default=2.0, gt=0)
    """Timeout of one CQL request made by the API."""
    celebrity_cache_s: float = Field(default=5.0, ge=0)
    """How long the API caches the CQL celebrities table for Redis-less feed reads."""
    access_log: bool = True
    """Log one JSON line per request (method, route, status, duration, request id)."""
    gc_freeze: bool = True
    """Tune the garbage collector at startup (freeze the startup heap, collect less often);
    off for apps built inside test processes."""
    stream_heartbeat_s: float = Field(default=15.0, gt=0, le=300)
    """An idle ``GET /v1/stream`` sends a comment line this often (proxies keep it open)."""
    stream_max_per_user: int = Field(default=5, ge=1)
    """Open streams one user may hold on one worker; one more gets 429."""
    stream_max_per_worker: int = Field(default=2000, ge=1)
    """Open streams one worker holds (each waits on its own Redis connection); one more
    gets 503 with Retry-After."""
    stream_send_timeout_s: float = Field(default=10.0, gt=0)
    """A stream whose client has not taken an event this long after it was sent (its
    socket buffers full: it stopped reading) is closed."""


class MediaSettings(_Block):
    """The media worker: what an upload may be, and the renditions it becomes."""

    max_pixels: int = Field(default=50_000_000, ge=1)
    """Most pixels (width x height) a photo may have; more is refused before decoding (a
    decompression bomb: a small file that would decode to gigabytes)."""
    max_side: int = Field(default=12_000, ge=1)
    """Longest width or height a photo (or a video frame) may have."""
    max_video_seconds: int = Field(default=180, ge=1)
    """Longest video accepted (every frame is decoded once to check it)."""
    video_codecs: tuple[str, ...] = ("h264", "hevc")
    """Video codecs (FFmpeg names) served as uploaded: what phones record and players play."""
    audio_codecs: tuple[str, ...] = ("aac", "mp3")
    """Audio codecs (FFmpeg names) served as uploaded."""
    rendition_widths: tuple[int, ...] = (1080, 320)
    """Widths of the renditions written for every photo and video poster (never wider than
    the picture)."""
    jpeg_quality: int = Field(default=85, ge=1, le=95)
    """JPEG quality of the renditions."""
    rendition_folder: str = "renditions"
    """Folder of the renditions in the media bucket: ``<folder>/<media id>/<generation>/``."""
    consumer_group: str = "feedline-media"
    """Kafka consumer group of the media workers (more workers share the partitions)."""


class BeamFlinkSettings(_Block):
    """The rebuild's ``--runner flink``: Beam's Flink job server on an embedded Flink.

    The pipeline runs in a second virtualenv whose apache-beam matches the job server
    (``make beam-runner`` installs both); PyFlink pins the main one's Beam to 2.61.
    """

    python: Path = REPO_ROOT / ".venv-beam" / "bin" / "python"
    """Interpreter of the Beam virtualenv (its apache-beam pin equals the job server's)."""
    job_server_classpath: Path = REPO_ROOT / ".local" / "jars" / "beam-flink-job-server"
    """Folder of the job server's jars (Beam's Flink runner and its runtime classpath)."""
    job_server_heap: str = "1g"
    """The job server's max heap; the embedded Flink runs in it."""
    parallelism: int = Field(default=2, ge=1, le=16)
    """Parallelism of the embedded Flink's tasks."""
    environment_type: Literal["LOOPBACK", "EXTERNAL"] = "LOOPBACK"
    """Where the Python steps run: LOOPBACK, in the launching process (no boot binary or
    container needed); EXTERNAL needs ``environment_config`` (a worker pool's address)."""
    environment_config: str = ""
    """The SDK worker pool's host:port when ``environment_type`` is EXTERNAL."""
    startup_timeout_s: float = 60.0
    """How long the job server may take to listen."""


class LocalStackSettings(_Block):
    """Ports, heaps and paths of the process-based local stack (no Docker)."""

    state_dir: Path = REPO_ROOT / ".local"
    """Where jars, data, logs and pid files of the local stack live."""
    kafka_controller_port: int = 9093
    """KRaft controller listener port."""
    kafka_heap: str = "512m"
    """Kafka broker max heap."""
    cassandra_heap: str = "768m"
    """Cassandra max heap."""
    cassandra_storage_port: int = 7000
    """Cassandra inter-node port (bound to loopback)."""
    cassandra_commitlog_sync: Literal["batch", "group"] = "batch"
    """How the local Cassandra acknowledges a write: ``batch`` syncs the commit log as soon
    as writes are pending (each write waits for one fsync, concurrent ones share it);
    ``group`` syncs at most once per ``cassandra_commitlog_group_window_ms`` and acknowledges
    the writes of each window together. Both acknowledge only synced writes (``periodic``,
    which does not, lost an acknowledged edge when killed)."""
    cassandra_commitlog_group_window_ms: int = Field(default=2, ge=1, le=1000)
    """``commitlog_sync_group_window`` in group mode: a sequential writer waits up to this
    long per write."""
    redis_maxmemory: str = "1gb"
    """Redis maxmemory; eviction drops least-recently-used keys (it is a rebuildable cache)."""
    redis_guards_port: int = 6380
    """Port of the guards Redis (rate-limit counters, idempotency records): a second
    redis-server that never evicts, given to the API as ``redis.guards_url`` unless that is
    set already."""
    redis_guards_maxmemory: str = "128mb"
    """The guards Redis's maxmemory; full, it refuses writes (noeviction) instead of dropping
    a counter, and the API's guards fall back to counting in process."""
    redis_cluster_port: int = 6391
    """First of the three consecutive ports of the local Redis Cluster (three masters,
    ``jobs.localstack.redis_cluster``); each also uses its port plus 10000 for the cluster
    bus."""
    redis_cluster: bool = False
    """``local up`` starts the local Redis Cluster too, beside the single cache Redis (the
    tests start it so). With ``redis.cluster`` set, the cluster is the cache: ``local up``
    starts it instead of the single cache Redis, and ``redis.url`` must name one of its
    masters (``docs/REDIS-CLUSTER.md``)."""
    flink_rpc_port: int = 6123
    """Flink JobManager RPC port (loopback)."""
    flink_blob_port: int = 6124
    """Flink JobManager blob server port (loopback); with the ports above, the endpoints'
    ports and ``state_dir``, a second stack can run beside the first (e.g. for fault tests)."""
    flink_jobmanager_memory: str = "1024m"
    """Flink JobManager total process memory (1024m leaves ~450 MB heap after metaspace)."""
    flink_taskmanagers: int = Field(default=2, ge=1, le=8)
    """TaskManager processes of the local cluster (``flink-taskmanager``,
    ``flink-taskmanager-2`` …), each with ``flink.task_slots`` slots; a job's subtasks are
    spread over them (``taskmanager.load-balance.mode: slots``), so a job at parallelism 2
    runs in two processes, as on a cluster."""
    flink_taskmanager_memory: str = "2048m"
    """Flink TaskManager total process memory (the Python workers live outside it); it
    includes the metaspace and task off-heap below, so the other pools stay as they were
    at 1536m/256m/0."""
    flink_taskmanager_metaspace: str = "512m"
    """Flink TaskManager JVM metaspace: each job deployment loads its classes anew."""
    flink_taskmanager_task_off_heap: str = "256m"
    """Flink TaskManager task off-heap memory, added to the JVM's direct memory limit: the
    Python workers' gRPC buffers are direct memory, and a full test run of redeployments
    ran the default limit out (OutOfMemoryError: Direct buffer memory)."""
    start_timeout_s: float = Field(default=240.0, gt=0)
    """How long `feedctl local up` waits for each service to become healthy."""


class MonitoringSettings(_Block):
    """Prometheus and the exporters it scrapes on the local stack (127.0.0.1 only)."""

    prometheus_port: int = 9090
    """Port of the Prometheus server (web UI, query API, ``/metrics``)."""
    prometheus_retention: str = "2d"
    """How long Prometheus keeps samples (``--storage.tsdb.retention.time``)."""
    prometheus_retention_size: str = "512MB"
    """The most disk Prometheus's samples may take (``--storage.tsdb.retention.size``)."""
    scrape_interval_s: int = Field(default=15, ge=1)
    """Seconds between two scrapes of every target, and between two rule evaluations."""
    pushgateway_port: int = 9091
    """Port of the Prometheus Pushgateway the Flink JobManager and TaskManager push their
    metrics to (Flink's Prometheus reporter cannot listen on loopback only)."""
    flink_push_interval_s: int = Field(default=15, ge=1)
    """Seconds between two pushes of the Flink JobManager's and TaskManager's metrics."""
    redis_exporter_port: int = 9121
    """Port of prometheus-redis-exporter (it scrapes both Redis servers on demand)."""
    kafka_exporter_port: int = 9108
    """Port of the feedline exporter (``python -m jobs.exporter``): consumer lag per job and
    partition, dead-letter topics, and the local stack's processes and disk."""
    cassandra_metrics_port: int = 9500
    """Port of Cassandra's JMX exporter agent (heap, storage load, compactions)."""
    archiver_metrics_port: int = 9109
    """Port of the archiver's own metrics (records and objects written)."""
    freshness_probe_port: int = 9110
    """Port of the freshness probe's metrics (``python -m jobs.freshness_probe``)."""
    freshness_probe_interval_s: float = Field(default=30.0, gt=0)
    """Seconds between two posts of the freshness probe."""
    verifier_port: int = 9111
    """Port of the scheduled verifier's metrics (``python -m jobs.verifier``)."""
    verifier_interval_s: float = Field(default=900.0, gt=0)
    """Seconds between two rounds of the scheduled verifier (a live verify of a sample)."""
    verifier_sample: int = Field(default=50, ge=1)
    """Users each round of the scheduled verifier checks."""
