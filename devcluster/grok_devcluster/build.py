"""Build control-plane binaries from their Go modules with the machine's Go toolchain.

Data flow: a `GoModuleGroup` (versions.py) -> gomod.py renders go.mod and tools.go into a fresh
temporary folder outside the work tree -> `go mod tidy` resolves the dependency graph through
the Go module proxy -> one `go build` per binary writes to a temporary name next to the cache
path, which is then renamed into place, so an interrupted build never leaves a half-written
binary that later looks cached. Builds run one at a time (the machines this runs on have few
cores) and report progress (binary, elapsed time) on a text stream.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .gomod import generated_main_dir, go_build_argv, render_go_mod, render_main_go, render_tools_go
from .versions import GoModuleGroup

PROGRESS_INTERVAL_S = 30.0
_TAIL_LINES = 40


class BuildError(RuntimeError):
    """A binary could not be built; the message names it and shows the end of Go's output."""


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output captured)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def find_go() -> str:
    """Path of the `go` command, or a BuildError saying how to get the binaries without it."""
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "the Go toolchain (`go`) is not on PATH, so the control-plane binaries cannot be built. "
            "Install Go >= 1.24, or point $KUBEBUILDER_ASSETS at a folder that already holds "
            "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm."
        )
    return go


def _run_logged(
    argv: Sequence[str], cwd: Path, log: Path, what: str, progress: TextIO, env: dict[str, str]
) -> tuple[int, float]:
    """Run argv with output appended to `log`, printing elapsed time every PROGRESS_INTERVAL_S."""
    started = time.monotonic()
    with log.open("ab") as sink:
        sink.write(f"$ {' '.join(argv)}\n".encode())
        sink.flush()
        process = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                try:
                    returncode = process.wait(timeout=PROGRESS_INTERVAL_S)
                    break
                except subprocess.TimeoutExpired:
                    print(f"  ... {what}: {time.monotonic() - started:.0f}s", file=progress, flush=True)
        except BaseException:
            process.kill()
            process.wait()
            raise
    return returncode, time.monotonic() - started


def build_group(
    group: GoModuleGroup,
    binaries: Sequence[str],
    destinations: dict[str, Path],
    progress: TextIO = sys.stderr,
) -> dict[str, float]:
    """Build `binaries` (names from `group.binaries`) to `destinations[name]`.

    Returns seconds spent per binary (`go mod tidy` counted as "<group>:go-mod-tidy").
    Raises BuildError naming the failed step and showing the tail of Go's output.
    """
    go = find_go()
    env = dict(os.environ)
    # Only our flags: the wrapper folder is no VCS checkout, -mod=mod lets tidy/build write go.sum,
    # and no go.work of the caller's may pull other modules in.
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    env["GOWORK"] = "off"
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"grok-devcluster-build-{group.name}-") as tmp:
        workdir = Path(tmp)
        (workdir / "go.mod").write_text(render_go_mod(group), encoding="utf-8")
        (workdir / "tools.go").write_text(render_tools_go(group), encoding="utf-8")
        main_dir = generated_main_dir(group)
        if main_dir is not None:
            (workdir / main_dir).mkdir(parents=True)
            (workdir / main_dir / "main.go").write_text(render_main_go(group), encoding="utf-8")
        log = workdir / "build.log"
        print(f"resolving Go modules for {group.module} {group.version} ...", file=progress, flush=True)
        rc, elapsed = _run_logged(
            [go, "mod", "tidy"], workdir, log, f"{group.name} go mod tidy", progress, env
        )
        timings[f"{group.name}:go-mod-tidy"] = elapsed
        if rc != 0:
            raise BuildError(
                f"`go mod tidy` for {group.module} {group.version} failed (exit {rc}): check the package "
                f"paths under [{group.name}.binaries] in versions.toml and that the Go module proxy "
                f"(GOPROXY={env.get('GOPROXY', 'default')}) is reachable. Last lines of Go's output:\n"
                f"{_tail(log)}"
            )
        for name in binaries:
            destination = destinations[name]
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
            print(
                f"building {name} {group.version} (cold: up to ~4 min each on 2 cores) ...",
                file=progress,
                flush=True,
            )
            try:
                rc, elapsed = _run_logged(
                    [go, *go_build_argv(group, name, str(partial))[1:]],
                    workdir,
                    log,
                    f"building {name}",
                    progress,
                    env,
                )
                if rc != 0:
                    raise BuildError(
                        f"building {name} {group.version} from {group.binaries[name]} failed (go build exit {rc}). "
                        f"Last lines of Go's output:\n{_tail(log)}"
                    )
                partial.chmod(0o755)
                os.replace(partial, destination)
            finally:
                partial.unlink(missing_ok=True)
            timings[name] = elapsed
            size_mb = destination.stat().st_size / 1e6
            print(
                f"built {name} {group.version} in {elapsed:.0f}s ({size_mb:.0f} MB) -> {destination}",
                file=progress,
                flush=True,
            )
    return timings
