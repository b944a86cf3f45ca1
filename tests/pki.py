"""Test certificates made on the spot with `cryptography`: a CA, a server certificate for loopback,
a client certificate from the same CA, and a client certificate from an unrelated CA.

`make_pki(folder)` writes PEM files and returns their paths; nothing is checked in. `served(host,
port)` reads which certificate a TLS port presents, for tests that compare it with `digest(pem)`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from grok_devcluster.pki import issue, new_ca


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


#: Names a loopback server certificate is valid for.
_LOOPBACK = x509.SubjectAlternativeName(
    [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
)

CA = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _leaf(common: str, ca: CA, server: bool) -> CA:
    if server:
        return issue(*ca, common, ExtendedKeyUsageOID.SERVER_AUTH, _LOOPBACK)
    return issue(*ca, common, ExtendedKeyUsageOID.CLIENT_AUTH)


def pem(pair: CA) -> tuple[str, str]:
    """A certificate and its key as PEM text (the values of a kubernetes.io/tls Secret)."""
    cert, key = pair
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def server_pair(ca: CA, common: str = "grok-worker") -> tuple[str, str]:
    """A fresh loopback server certificate from `ca`, and its key, as PEM text."""
    return pem(_leaf(common, ca, server=True))


def client_pair(ca: CA, common: str = "grok client") -> tuple[str, str]:
    """A fresh client certificate from `ca`, and its key, as PEM text."""
    return pem(_leaf(common, ca, server=False))


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> Path:
    (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        (folder / f"{stem}.key").write_text(pem((cert, key))[1])
    return folder / f"{stem}.crt"


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = new_ca("grok test CA"), new_ca("some other CA")
    server = _leaf("grok-worker", ca, server=True)
    client = _leaf("grok client", ca, server=False)
    stranger = _leaf("stranger", other, server=False)
    _write(folder, "ca", ca[0], None)
    _write(folder, "other-ca", other[0], None)
    _write(folder, "server", *server)
    _write(folder, "client", *client)
    _write(folder, "stranger", *stranger)
    return Pki(
        ca=folder / "ca.crt",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.crt",
        other_client_cert=folder / "stranger.crt",
        other_client_key=folder / "stranger.key",
    )


def kubelet_secret_dir(folder: Path, files: dict[str, str], generation: int = 1) -> None:
    """Write `files` the way kubelet's atomic writer updates a mounted Secret: a new timestamped
    directory, `..data` swapped to it by one rename of a symlink, and one `key -> ..data/key`
    symlink per key; the previous generation's directory is removed afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "..data"
    old = Path(folder / str(data.readlink())) if data.is_symlink() else None
    fresh = folder / f"..2026_12_01_00_00_{generation:02d}.{generation:09d}"
    fresh.mkdir()
    for name, value in files.items():
        (fresh / name).write_text(value)
    tmp = folder / "..data_tmp"
    tmp.symlink_to(fresh.name)
    tmp.replace(data)
    for name in files:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    for link in folder.iterdir():
        if not link.name.startswith(".") and link.name not in files:
            link.unlink()
    if old is not None and old.exists():
        for child in old.iterdir():
            child.unlink()
        old.rmdir()


def digest(cert_pem: str) -> str:
    """SHA-256 of a PEM certificate's DER bytes (what `served` returns for it)."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem)).hexdigest()


def served(host: str, port: int, client: tuple[Path, Path] | None = None) -> str:
    """SHA-256 of the certificate `host:port` presents, read from a TLS handshake (ALPN h2, which a
    gRPC port needs) and not verified: the caller compares it with `digest` of what it expects."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    if client is not None:
        context.load_cert_chain(*client)
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()
