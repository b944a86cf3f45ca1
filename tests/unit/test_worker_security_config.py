"""`grok-worker serve`'s security flags and config section -> what the servers use (`load_security`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from grok_worker.contract import GroupEnv, SecuritySection, TLSSection, WorkerConfig
from grok_worker.server.config import ConfigError, load_worker_config
from grok_worker.server.health_port import health_host
from grok_worker.server.listen import grpc_address
from grok_worker.server.main import add_arguments
from grok_worker.server.security import load_security
from grok_worker.server.tokens import TokenStore, bearer_token
from tests.pki import make_pki


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(flags))


def test_flags_fill_the_contract_fields_and_override_the_file(tmp_path: Path) -> None:
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({"security": {"bind_address": "10.0.0.1", "health_port": 8081}}))
    args = parse(
        "--config", str(config), "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem",
        "--tokens-dir", "/t", "--group-secret-file", "/g/step-key", "--bind", "127.0.0.1",
    )  # fmt: skip
    security = load_worker_config(args, environ={}).security
    assert security == SecuritySection(
        tls=TLSSection(cert_file="c.pem", key_file="k.pem", client_ca_file="ca.pem"),
        tokens_dir="/t",
        group_secret_file="/g/step-key",
        bind_address="127.0.0.1",
        health_port=8081,
    )


def test_an_empty_section_turns_everything_off() -> None:
    security = load_security(WorkerConfig().security, GroupEnv())
    assert (security.tls, security.tokens, security.group_key, security.health_port) == (
        None,
        None,
        None,
        None,
    )
    assert (security.bind_host, security.step_host) == ("[::]", "0.0.0.0")
    assert grpc_address(security.bind_host, 50051) == "[::]:50051"


@pytest.mark.parametrize(
    ("bind", "pod_ip", "health", "step"),
    [
        ("", "", "127.0.0.1", "0.0.0.0"),
        ("127.0.0.1", "", "127.0.0.1", "127.0.0.1"),
        ("", "10.1.2.3", "10.1.2.3", "10.1.2.3"),
        ("0.0.0.0", "10.1.2.3", "10.1.2.3", "10.1.2.3"),
        ("fd00::5", "", "fd00::5", "fd00::5"),
    ],
)
def test_where_the_health_port_and_the_step_channel_bind(
    bind: str, pod_ip: str, health: str, step: str
) -> None:
    section = SecuritySection(bind_address=bind, health_port=8081)
    security = load_security(section, GroupEnv(pod_ip=pod_ip))
    assert security.health_host == health == health_host(section, GroupEnv(pod_ip=pod_ip))
    assert security.step_host == step
    assert security.health_port == 8081
    assert grpc_address("fd00::5", 1) == "[fd00::5]:1"


def test_tls_files_are_read_and_a_mismatched_key_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    good = TLSSection(
        cert_file=str(pki.server_cert), key_file=str(pki.server_key), client_ca_file=str(pki.ca)
    )
    tls = load_security(SecuritySection(tls=good), GroupEnv()).tls
    assert tls is not None
    assert tls.mutual
    mismatched = good.model_copy(update={"key_file": str(pki.client_key)})
    with pytest.raises(ConfigError, match="not a matching certificate and key"):
        load_security(SecuritySection(tls=mismatched), GroupEnv())


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (SecuritySection(tls=TLSSection(cert_file="/nope.crt", key_file="/nope.key")), r"security.tls.cert_file \(--tls-cert\): cannot read /nope.crt"),
        (SecuritySection(tls=TLSSection(cert_file=__file__, key_file=__file__)), "is not a PEM file"),
        (SecuritySection(tls=TLSSection(cert_file=__file__)), r"security.tls.key_file \(--tls-key\) must be set"),
        (SecuritySection(tls=TLSSection(client_ca_file="/ca.pem")), r"cert_file \(--tls-cert\) is empty"),
        (SecuritySection(tokens_dir="/nonexistent"), r"security.tokens_dir \(--tokens-dir\)"),
        (SecuritySection(group_secret_file="/nonexistent"), r"security.group_secret_file \(--group-secret-file\)"),
    ],
)  # fmt: skip
def test_bad_settings_name_the_setting(section: SecuritySection, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_security(section, GroupEnv())


def test_the_group_key_is_read_stripped_and_must_not_be_short(tmp_path: Path) -> None:
    key = tmp_path / "step-key"
    key.write_bytes(b"0123456789abcdef0123\n")
    assert (
        load_security(SecuritySection(group_secret_file=str(key)), GroupEnv()).group_key
        == b"0123456789abcdef0123"
    )
    key.write_text("short")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        load_security(SecuritySection(group_secret_file=str(key)), GroupEnv())


def test_the_token_store_skips_dot_files_and_empty_files_and_compares_whole_tokens(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("tok-a\n")
    (tmp_path / "b").write_text("")
    (tmp_path / ".hidden").write_text("tok-hidden")
    (tmp_path / "sub").mkdir()
    store = TokenStore(tmp_path, poll_seconds=0)
    assert store.count == 1
    assert store.accepts("tok-a")
    for wrong in ("tok-hidden", "", None, "tok-", "tok-ab", "TOK-A"):
        assert not store.accepts(wrong)
    (tmp_path / "a").write_text("tok-a-2")  # rewritten in place: size and mtime change
    assert store.accepts("tok-a-2")
    assert not store.accepts("tok-a")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_header_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
