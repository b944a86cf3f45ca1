"""The build driver runs go in a wrapper module, reports progress, and never leaves a half-written
binary in the cache. A stand-in `go` script plays the toolchain, so no network or compiler is used.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from grok_devcluster import build
from grok_devcluster.build import BuildError, build_group
from grok_devcluster.versions import load_groups

# Records its arguments and working folder; `go build` writes half a file to -o, then obeys $FAKE_GO_BUILD.
FAKE_GO = """#!/bin/sh
echo "$PWD $*" >> "$FAKE_GO_CALLS"
if [ "$1" = "mod" ]; then exit "${FAKE_GO_TIDY:-0}"; fi
while [ $# -gt 1 ]; do if [ "$1" = "-o" ]; then out="$2"; fi; shift; done
printf 'partial' > "$out"
sleep "${FAKE_GO_SLEEP:-0}"
if [ "$FAKE_GO_BUILD" = "fail" ]; then echo "cmd/kwok/main.go:3:2: undefined: frobnicate" >&2; exit 2; fi
exit 0
"""


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "gobin"
    folder.mkdir()
    go = folder / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GO_CALLS", str(calls))
    return calls


def test_a_successful_build_tidies_then_builds_into_the_destination(tmp_path: Path, fake_go: Path) -> None:
    group = load_groups()["kwok"]
    destination = tmp_path / "cache" / "kwok-v0.7.0" / "kwok"
    progress = io.StringIO()
    timings = build_group(group, ["kwok"], {"kwok": destination}, progress=progress)
    assert destination.read_text() == "partial"
    assert os.access(destination, os.X_OK)
    assert list(destination.parent.iterdir()) == [destination]
    calls = fake_go.read_text().splitlines()
    assert calls[0].endswith(" mod tidy")
    workdir = calls[0].split(" ")[0]
    assert "grok-devcluster-build-kwok-" in workdir
    assert not Path(workdir).exists(), "the temporary wrapper module is removed"
    assert "-ldflags -s -w -X sigs.k8s.io/kwok/pkg/consts.Version=0.7.0" in calls[1]
    assert calls[1].endswith("sigs.k8s.io/kwok/cmd/kwok")
    assert set(timings) == {"kwok:go-mod-tidy", "kwok"}
    assert "built kwok v0.7.0" in progress.getvalue()


def test_a_failed_build_names_the_binary_shows_go_output_and_caches_nothing(
    tmp_path: Path, fake_go: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GO_BUILD", "fail")
    destination = tmp_path / "cache" / "kwok"
    with pytest.raises(BuildError) as caught:
        build_group(load_groups()["kwok"], ["kwok"], {"kwok": destination}, progress=io.StringIO())
    message = str(caught.value)
    assert "building kwok v0.7.0 from sigs.k8s.io/kwok/cmd/kwok failed (go build exit 2)" in message
    assert "undefined: frobnicate" in message
    assert list(destination.parent.iterdir()) == []


def test_a_failed_tidy_points_at_versions_toml_and_the_proxy(
    tmp_path: Path, fake_go: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GO_TIDY", "1")
    with pytest.raises(BuildError, match=r"go mod tidy.*\[helm\.binaries\].*GOPROXY"):
        build_group(load_groups()["helm"], ["helm"], {"helm": tmp_path / "helm"}, progress=io.StringIO())


def test_a_slow_build_reports_elapsed_time(
    tmp_path: Path, fake_go: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GO_SLEEP", "0.5")
    monkeypatch.setattr(build, "PROGRESS_INTERVAL_S", 0.1)
    progress = io.StringIO()
    build_group(load_groups()["etcd"], ["etcd"], {"etcd": tmp_path / "etcd"}, progress=progress)
    assert "... building etcd: " in progress.getvalue()
