"""Start control-plane processes detached from the caller, and stop them again by pid.

A process is identified by (pid, start time): the start time read from /proc/<pid>/stat
guards against signalling an unrelated process that reused the pid after ours exited. Each
process gets its own session (Ctrl-C in the caller's terminal does not reach it) and writes
stdout+stderr to a log file. `die_with_parent=True` additionally asks the kernel to kill it when
the starting process dies, even by SIGKILL: the pytest fixture uses it so a killed test run
leaves nothing behind; `grok-devcluster up` does not, so its cluster outlives the command.

The kernel is asked through util-linux's `setpriv --pdeathsig KILL`, which the child execs before
the program, not through a `preexec_fn`: with one, Python forks instead of using vfork and runs
Python code and every fork handler in the child, and a test process that has loaded gRPC then
sometimes had the child abort (SIGABRT, gRPC's poller: "epoll_wait error: Bad file descriptor")
before the program started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    """Enough to find a started process again from another Python process."""

    name: str
    pid: int
    start_time: int | None
    log: str


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on, or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":  # a zombie has exited; only its exit status remains
        return None
    return int(fields[19])


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time `pid` has used (user + system), or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def is_running(record: ProcessRecord) -> bool:
    """Whether the process in `record` is still the one we started and has not exited."""
    started = process_start_time(record.pid)
    if started is None:
        return False
    return record.start_time is None or started == record.start_time


def _die_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` run so that the kernel kills it when the thread that started it exits."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError(
            "setpriv not found: install util-linux (it kills test clusters with their test run)"
        )
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


def spawn(
    name: str, argv: Sequence[str], log: Path, *, die_with_parent: bool = False
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start argv with output to `log`; return the Popen (for reaping) and a record to find it later."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            _die_with_parent(argv) if die_with_parent else list(argv),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return process, ProcessRecord(name, process.pid, process_start_time(process.pid), str(log))


def stop(record: ProcessRecord, popen: subprocess.Popen[bytes] | None = None, grace_s: float = 10.0) -> None:
    """SIGTERM the process, SIGKILL it after `grace_s`, and wait until it is gone."""
    errors = stop_together([(record, popen)], grace_s)
    if errors:
        raise RuntimeError("; ".join(errors))


def stop_together(
    targets: Sequence[tuple[ProcessRecord, subprocess.Popen[bytes] | None]], grace_s: float = 10.0
) -> list[str]:
    """SIGTERM every target at once, SIGKILL the ones still there after `grace_s`, wait for all.

    Returns one actionable message per process that would not die (normally none).
    """
    for _, popen in targets:
        if popen is not None:
            popen.poll()  # reap children that already exited
    live = [(record, popen) for record, popen in targets if is_running(record)]
    for record, _ in live:
        _signal(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    stubborn = [(r, p) for r, p in live if not _wait_gone(r, p, max(0.0, deadline - time.monotonic()))]
    for record, _ in stubborn:
        _signal(record.pid, signal.SIGKILL)
    return [
        f"{record.name} (pid {record.pid}) survived SIGKILL; stop it by hand: kill -9 {record.pid}"
        for record, popen in stubborn
        if not _wait_gone(record, popen, 10.0)
    ]


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_gone(record: ProcessRecord, popen: subprocess.Popen[bytes] | None, timeout_s: float) -> bool:
    if popen is not None:
        try:
            popen.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(record):
            return True
        time.sleep(0.05)
    return not is_running(record)


def log_tail(path: str | Path, lines: int = 30) -> str:
    """The last lines of a process log, for error messages."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
