"""Credentials and TLS settings of the three stores, as each client library gets them."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from feedline.settings import CqlSettings, KafkaSettings, RedisSettings, redact_url
from feedline.stores.cql import security_options
from jobs.localstack.redis_server import EXPORTER_USER, acl_lines
from pipelines.streaming.job_graph import kafka_table_options, without_servers


def test_urls_are_shown_without_their_password() -> None:
    assert redact_url("redis://feedline:s3cret@127.0.0.1:6379/0") == (
        "redis://feedline:***@127.0.0.1:6379/0")
    assert redact_url("rediss://:s3cret@cache:6380/1") == "rediss://:***@cache:6380/1"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert "s3cret" not in repr(RedisSettings(url="redis://u:s3cret@h:1/0"))
    assert "s3cret" not in repr(CqlSettings(password="s3cret"))
    assert "s3cret" not in repr(KafkaSettings(security_protocol="SASL_SSL", sasl_username="u",
                                              sasl_password="s3cret"))


def test_a_redis_url_with_credentials_makes_an_acl_and_a_read_only_exporter_user() -> None:
    lines = acl_lines("redis://app:pw1@127.0.0.1:6379/0", "pw2")
    assert lines[0] == "user default off"  # nobody gets in without logging in
    assert lines[1] == "user app on >pw1 ~* &* +@all"
    assert lines[2].startswith(f"user {EXPORTER_USER} on >pw2 -@all ")
    assert "+@write" not in lines[2] and "+@all" not in lines[2]
    assert acl_lines("redis://:pw1@127.0.0.1:6379/0", "pw2")[0] == (
        "user default on >pw1 ~* &* +@all")
    assert acl_lines("redis://127.0.0.1:6379/0", "pw2") == []  # no password: open as before
    with pytest.raises(ValueError, match=r"cannot be written to redis.conf") as err:
        acl_lines("redis://app:>oops@127.0.0.1:6379/0", "pw2")
    assert "oops" not in str(err.value)


def test_kafka_security_options_for_kafka_python_and_java_clients() -> None:
    plain = KafkaSettings(bootstrap_servers="b:9092")
    assert plain.client_options() == {"bootstrap_servers": "b:9092"}
    assert plain.java_properties() == {"bootstrap.servers": "b:9092"}
    sasl = KafkaSettings(bootstrap_servers="b:9093", security_protocol="SASL_SSL",
                         sasl_mechanism="SCRAM-SHA-512", sasl_username="feedline",
                         sasl_password='p"w', ssl_cafile="/etc/ca.pem")
    assert sasl.client_options() == {
        "bootstrap_servers": "b:9093", "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "feedline",
        "sasl_plain_password": 'p"w', "ssl_cafile": "/etc/ca.pem"}
    props = sasl.java_properties()
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="feedline" password="p\\"w";')
    assert (props["ssl.truststore.type"], props["ssl.truststore.location"]) == (
        "PEM", "/etc/ca.pem")
    assert "bootstrap.servers" not in without_servers(props)
    # The Flink table connector gets each one as a 'properties.*' option.
    table = kafka_table_options(sasl)
    assert "'properties.security.protocol' = 'SASL_SSL'," in table
    assert "'properties.bootstrap.servers' = 'b:9093'," in table
    tls = KafkaSettings(security_protocol="SSL")
    assert tls.client_options() == {"bootstrap_servers": "127.0.0.1:9092",
                                    "security_protocol": "SSL"}
    with pytest.raises(ValidationError, match="needs sasl_username"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT")


def test_cql_authentication_and_tls_options(tmp_path: Path) -> None:
    assert security_options(CqlSettings(username=None)) == {}
    options = security_options(CqlSettings(username="feedline", password="pw"))
    provider = options["auth_provider"]
    assert provider.new_authenticator("h").initial_response() == b"\x00feedline\x00pw"
    ca = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not ca.exists():
        pytest.skip("no system CA bundle to load")
    secured = security_options(CqlSettings(tls_ca_file=str(ca), tls_server_hostname="db"))
    context = secured["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert secured["ssl_options"] == {"server_hostname": "db"}


def test_the_local_cassandra_logs_in_and_acknowledges_only_synced_writes(tmp_path: Path) -> None:
    import yaml

    from feedline.settings import LocalStackSettings, StackSettings
    from jobs.localstack.cassandra import CassandraService

    svc = CassandraService(StackSettings(local=LocalStackSettings(state_dir=tmp_path)))
    svc.home.mkdir(parents=True)
    svc.prepare()
    conf = yaml.safe_load((svc.home / "cassandra.yaml").read_text())
    assert conf["authenticator"] == "PasswordAuthenticator"
    # Batch commit: an acknowledged write survives SIGKILL of the only node.
    assert conf["commitlog_sync"] == "batch"
    assert "commitlog_sync_group_window" not in conf
    grouped = CassandraService(StackSettings(local=LocalStackSettings(
        state_dir=tmp_path / "group", cassandra_commitlog_sync="group",
        cassandra_commitlog_group_window_ms=3)))
    grouped.home.mkdir(parents=True)
    grouped.prepare()
    conf = yaml.safe_load((grouped.home / "cassandra.yaml").read_text())
    assert (conf["commitlog_sync"], conf["commitlog_sync_group_window"]) == ("group", "3ms")
    open_node = CassandraService(StackSettings(
        local=LocalStackSettings(state_dir=tmp_path / "open"),
        cql=CqlSettings(username=None)))
    open_node.home.mkdir(parents=True)
    open_node.prepare()
    assert yaml.safe_load((open_node.home / "cassandra.yaml").read_text())[
        "authenticator"] == "AllowAllAuthenticator"


def test_a_refused_login_is_told_from_a_node_that_is_down() -> None:
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    from jobs.localstack.cassandra import login_refused

    refused = NoHostAvailable("Unable to connect to any servers",
                              {"127.0.0.1:9042": AuthenticationFailed("Bad credentials")})
    down = NoHostAvailable("Unable to connect to any servers",
                           {"127.0.0.1:9042": ConnectionRefusedError(111, "refused")})
    # The driver also raises it with a list of hosts when a cluster shuts down.
    listed = NoHostAvailable("Unable to connect to any servers", ["127.0.0.1"])
    assert login_refused(refused) and login_refused(AuthenticationFailed("x"))
    assert not login_refused(down) and not login_refused(listed)
    assert not login_refused(TimeoutError())
