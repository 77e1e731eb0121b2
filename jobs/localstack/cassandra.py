"""Apache Cassandra 5 as the local CQL store standing in for ScyllaDB.

No ScyllaDB binary is published on a registry these machines reach; Cassandra 5 speaks
the same CQL and native protocol v4, so the same driver, schema and prepared statements
run against it unchanged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

import yaml

from feedline.settings import REPO_ROOT, CqlSettings, StackSettings
from jobs.localstack.base import JAVA, Service, port_open

LOGBACK_XML = REPO_ROOT / "infra" / "local" / "cassandra-logback.xml"
#: What Cassandra's JMX exporter agent exports (a few MBeans, and the JVM's own metrics).
JMX_EXPORTER_YML = REPO_ROOT / "infra" / "local" / "cassandra-jmx-exporter.yml"

# Module access Cassandra needs on Java 17 (from its conf/jvm17-server.options).
_JAVA17_ACCESS = [
    *(
        f"--add-exports={m}=ALL-UNNAMED"
        for m in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={m}=ALL-UNNAMED"
        for m in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "jdk.compiler/com.sun.tools.javac",
            "java.base/java.lang",
            "java.base/java.util",
        )
    ),
]


def commitlog_sync(settings: StackSettings) -> dict[str, str]:
    """The commit log's sync settings (``local.cassandra_commitlog_sync``)."""
    local = settings.local
    if local.cassandra_commitlog_sync == "group":
        return {"commitlog_sync": "group",
                "commitlog_sync_group_window": f"{local.cassandra_commitlog_group_window_ms}ms"}
    return {"commitlog_sync": "batch"}


class CassandraService(Service):
    """Single Cassandra node on loopback, keyspace migrated once healthy."""

    name = "cassandra"

    def endpoint(self) -> str:
        """Contact point and native port."""
        return f"{self.settings.cql.contact_points[0]}:{self.settings.cql.port}"

    def prepare(self) -> None:
        """Write cassandra.yaml (single token, no auto-snapshots, loopback only)."""
        host = self.settings.cql.contact_points[0]
        data = self.home / "data"
        storage_port = self.settings.local.cassandra_storage_port
        conf = {
            "cluster_name": "feedline-local",
            "num_tokens": 1,
            "initial_token": 0,
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            # A write is acknowledged only once the commit log holding it is synced (batch
            # mode: pending writes are synced together, at once; a "group" window of 20 ms
            # made every sequential write wait 20 ms, and a start-up that rewrites system
            # rows one by one took minutes). With the default periodic sync (10 s) a killed
            # single node (no replicas to repair from) can lose acknowledged writes: the
            # Cassandra-kill fault test lost an edge written just before SIGKILL.
            **commitlog_sync(self.settings),
            "commitlog_directory": str(data / "commitlog"),
            "data_file_directories": [str(data / "data")],
            "hints_directory": str(data / "hints"),
            "saved_caches_directory": str(data / "saved_caches"),
            "cdc_raw_directory": str(data / "cdc_raw"),
            "endpoint_snitch": "SimpleSnitch",
            "seed_provider": [
                {
                    "class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                    "parameters": [{"seeds": f"{host}:{storage_port}"}],
                }
            ],
            "listen_address": host,
            "rpc_address": host,
            "storage_port": storage_port,
            "native_transport_port": self.settings.cql.port,
            "start_native_transport": True,
            "auto_snapshot": False,
            "snapshot_before_compaction": False,
            "concurrent_reads": 8,
            "concurrent_writes": 16,
            "concurrent_counter_writes": 8,
            "memtable_heap_space": "96MiB",
            "memtable_offheap_space": "96MiB",
            "key_cache_size": "16MiB",
            # Password authentication when the settings name a role (the default): the
            # stack logs its clients in as that role, created by `after_healthy`.
            "authenticator": ("PasswordAuthenticator" if self.settings.cql.username
                              else "AllowAllAuthenticator"),
            "authorizer": "AllowAllAuthorizer",
            # A 2-core machine running the whole stack stalls now and then: wait longer
            # than the 2 s default before declaring a write lost.
            "write_request_timeout": "5000ms",
            "read_request_timeout": "5000ms",
            "range_request_timeout": "10000ms",
            "batch_size_warn_threshold": "64KiB",
            "batch_size_fail_threshold": "640KiB",
        }
        (self.home / "cassandra.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """Run CassandraDaemon in the foreground."""
        jars = self.settings.local.state_dir / "jars" / "cassandra"
        jamm = sorted(jars.glob("jamm-*.jar"))
        if not jamm:
            raise FileNotFoundError(f"jamm jar missing in {jars}; run `make jars`")
        heap = self.settings.local.cassandra_heap
        agent_dir = self.settings.local.state_dir / "jars" / "jmx-exporter"
        agents = sorted(agent_dir.glob("jmx_prometheus_javaagent-*.jar"))
        if not agents:
            raise FileNotFoundError(f"JMX exporter agent missing in {agent_dir}; run `make jars`")
        port = self.settings.monitoring.cassandra_metrics_port
        argv = [
            JAVA,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-Xss256k",
            "-XX:+UseG1GC",
            "-XX:+ParallelRefProcEnabled",
            "-XX:MaxTenuringThreshold=1",
            "-XX:MaxGCPauseMillis=300",
            "-XX:+AlwaysPreTouch",
            f"-javaagent:{jamm[0]}",
            # Prometheus metrics on 127.0.0.1:<monitoring.cassandra_metrics_port>.
            f"-javaagent:{agents[-1]}=127.0.0.1:{port}:{JMX_EXPORTER_YML}",
            *_JAVA17_ACCESS,
            "-Djdk.attach.allowAttachSelf=true",
            "-Dio.netty.tryReflectionSetAccessible=true",
            "-Dio.netty.allocator.useCacheForAllThreads=true",
            "-Dio.netty.allocator.maxOrder=11",
            f"-Dcassandra.config=file://{self.home / 'cassandra.yaml'}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={self.home / 'data'}",
            f"-Dcassandra.logdir={self.home / 'logs'}",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=100",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-Dcassandra.native.epoll.enabled=true",
            f"-Dlogback.configurationFile={LOGBACK_XML}",
            "-cp",
            self.jars("cassandra"),
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        return argv, {}

    def healthy(self) -> bool:
        """The node answers a CQL query over the native protocol."""
        host = self.settings.cql.contact_points[0]
        if not port_open(host, self.settings.cql.port):
            return False
        from feedline.stores.cql import connect
        from schemas.cql_statements import READS

        try:
            cluster, session = connect(self.settings.cql, keyspace=None, timeout_s=5)
        except Exception as error:  # any driver failure means "not healthy yet" ...
            # ... but a refused login: the node answers, its role is made by after_healthy.
            return login_refused(error)
        try:
            return session.execute(READS["ping"]).one() is not None
        finally:
            cluster.shutdown()

    def after_healthy(self) -> None:
        """Create the settings' role if the node refuses it, then apply the migrations."""
        from feedline.stores.cql import migrate

        if self.settings.cql.username:
            ensure_role(self.settings.cql)
        migrate(self.settings.cql)


#: The superuser a fresh Cassandra with PasswordAuthenticator creates (well known).
DEFAULT_SUPERUSER = ("cassandra", "cassandra")


def login_refused(error: BaseException) -> bool:
    """Whether a connect failed because the node refused the credentials."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    if isinstance(error, AuthenticationFailed):
        return True
    if not isinstance(error, NoHostAvailable):
        return False
    causes = error.errors.values() if isinstance(error.errors, dict) else error.errors or ()
    return any(isinstance(cause, AuthenticationFailed) for cause in causes)


def ensure_role(cql: CqlSettings, timeout_s: float = 60.0) -> None:
    """Log in as the settings' role, or create it (LOGIN, SUPERUSER) as the default superuser.

    The default superuser's well-known password is then replaced by a random one, as the
    Cassandra docs advise: from then on only the settings' role logs in.
    """
    import secrets

    from cassandra.query import SimpleStatement

    from feedline.stores.cql import connect

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,47}", cql.username or ""):
        raise ValueError(f"FEEDLINE_CQL__USERNAME {cql.username!r} is not a plain role name")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cluster, _session = connect(cql, keyspace=None, timeout_s=5)
            cluster.shutdown()
            return
        except Exception as error:
            if not login_refused(error):
                raise
        try:
            cluster, session = connect(cql, keyspace=None, timeout_s=5, as_role=DEFAULT_SUPERUSER)
        except Exception as error:
            # The default superuser is set up a moment after the node starts listening.
            if not login_refused(error) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)
            continue
        try:
            session.execute(SimpleStatement(
                f"CREATE ROLE IF NOT EXISTS {cql.username} WITH PASSWORD = %s "
                "AND LOGIN = true AND SUPERUSER = true"), (cql.password,))
            session.execute(SimpleStatement(
                f"ALTER ROLE {DEFAULT_SUPERUSER[0]} WITH PASSWORD = %s"),
                (secrets.token_urlsafe(24),))
        finally:
            cluster.shutdown()
