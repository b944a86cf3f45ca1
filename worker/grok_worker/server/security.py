"""The worker's `security` config section turned into what the servers use.

Data flow: `SecuritySection` (+ the pod IP from `GroupEnv`) -> `load_security` reads and checks the
TLS files, opens the token directory, reads the group's step-channel key, and works out where each
listener binds -> `Security`, or a `ConfigError` naming the setting and the fix. Everything is off
when the section is empty: plaintext, no tokens, an unauthenticated step channel (with a warning),
the APIs on every interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grok_worker.contract import GroupEnv, SecuritySection
from grok_worker.server.config import ConfigError
from grok_worker.server.health_port import health_host
from grok_worker.server.listen import ANY_HOSTS
from grok_worker.server.tls import TLSConfigError, TLSFiles, read_tls, ssl_context
from grok_worker.server.tokens import TokenStore, TokenStoreError


@dataclass(frozen=True)
class Security:
    tls: TLSFiles | None
    tokens: TokenStore | None
    #: Key of the step-channel handshake (None = unauthenticated).
    group_key: bytes | None
    #: Where the gRPC, HTTP and metrics listeners bind.
    bind_host: str
    #: Plaintext health-only port (None = none) and where it binds.
    health_port: int | None
    health_host: str
    #: Where the leader's step channel binds (followers on other hosts must reach it).
    step_host: str


def read_group_key(path: str) -> bytes:
    """The step-channel key from `security.group_secret_file` (surrounding whitespace dropped)."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as err:
        raise ConfigError(
            f"security.group_secret_file (--group-secret-file): cannot read {path}: {err.strerror}"
        ) from None
    if len(key) < 16:
        raise ConfigError(
            f"security.group_secret_file (--group-secret-file): {path} holds {len(key)} bytes; "
            "the group key must be at least 16 bytes"
        )
    return key


def load_security(section: SecuritySection, group: GroupEnv) -> Security:
    try:
        tls = read_tls(section.tls)
        if tls is not None:
            ssl_context(tls)  # a certificate and key that do not match fail here, not at the first client
        tokens = TokenStore(section.tokens_dir) if section.tokens_dir else None
    except (TLSConfigError, TokenStoreError) as err:
        raise ConfigError(str(err)) from None
    key = read_group_key(section.group_secret_file) if section.group_secret_file else None
    bind = section.bind_address or "[::]"
    step = group.pod_ip or ("0.0.0.0" if section.bind_address in ANY_HOSTS else section.bind_address)
    return Security(
        tls=tls,
        tokens=tokens,
        group_key=key,
        bind_host=bind,
        health_port=section.health_port or None,
        health_host=health_host(section, group),
        step_host=step.strip("[]"),
    )
