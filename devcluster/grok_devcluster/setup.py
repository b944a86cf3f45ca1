"""`grok-devcluster setup-node`: install the real node's Debian packages, at the versions pinned.

Data flow: versions.toml's [debian.packages] -> the ones not installed at that version
(dpkg-query) -> one `apt-get install --no-install-recommends name=version ...` (after
`apt-get update` when apt does not know a version yet). Installing them starts no service on a
machine without systemd, and the packages change nothing else: the node keeps its own state in
its run folder (realnode.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .versions import load_debian_packages


class SetupError(RuntimeError):
    """The packages could not be installed; the message says why and what to do."""


def installed_version(package: str) -> str | None:
    result = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Status} ${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.startswith("install ok installed "):
        return None
    return result.stdout.removeprefix("install ok installed ")


#: A version of "*" in versions.toml: any installed version will do (apt picks one to install).
ANY_VERSION = "*"


def missing_packages(pinned: dict[str, str]) -> dict[str, str]:
    """The packages not installed at their pinned version (or at all, for "*")."""
    missing = {}
    for name, version in pinned.items():
        installed = installed_version(name)
        if installed is None or (version != ANY_VERSION and installed != version):
            missing[name] = version
    return missing


def install_node_packages() -> dict[str, str]:
    """Install what is missing; returns the packages installed (empty when all were there)."""
    pinned = load_debian_packages()
    if shutil.which("dpkg-query") is None or shutil.which("apt-get") is None:
        raise SetupError(
            "this machine has no apt-get/dpkg: install these packages (or their equivalents) by hand: "
            + ", ".join(f"{name} {version}" for name, version in pinned.items())
        )
    if os.geteuid() != 0:
        raise SetupError("installing packages needs root: run `sudo grok-devcluster setup-node`")
    missing = missing_packages(pinned)
    if not missing:
        print(f"all {len(pinned)} packages of the real node are installed at their pinned versions")
        return {}
    specs = [name if version == ANY_VERSION else f"{name}={version}" for name, version in missing.items()]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "--yes", "--no-install-recommends", *specs]
    print(f"$ {' '.join(argv)}", flush=True)
    if subprocess.run(argv, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=False)
        if subprocess.run(argv, env=env, check=False).returncode != 0:
            raise SetupError(
                f"apt-get could not install {', '.join(specs)}; check that the Debian bookworm "
                "repositories are configured (the versions are pinned in versions.toml)"
            )
    return missing
