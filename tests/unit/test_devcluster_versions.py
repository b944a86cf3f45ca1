"""versions.toml is parsed and validated, and the wrapper Go modules are rendered from it.

Pure functions only: no Go toolchain, no network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from grok_devcluster.binaries import ALL_BINARIES, ON_REQUEST_BINARIES, locate_binary
from grok_devcluster.build import BuildError, find_go
from grok_devcluster.gomod import go_build_argv, render_go_mod, render_ldflags, render_tools_go
from grok_devcluster.paths import binary_cache_path
from grok_devcluster.versions import VersionsError, group_of, load_groups, parse_groups


def test_pins_the_versions_the_project_runs_on() -> None:
    groups = load_groups()
    assert groups["kubernetes"].version == "v1.34.4"
    assert groups["kubernetes"].replace_version == "v0.34.4"
    assert re.fullmatch(r"v3\.6\.\d+", groups["etcd"].version)
    assert groups["kwok"].version == "v0.7.0"
    assert re.fullmatch(r"v3\.19\.\d+", groups["helm"].version)
    assert groups["kueue"].version == "v0.17.0"
    assert sorted(b for g in groups.values() for b in g.binaries) == sorted(
        (*ALL_BINARIES, *ON_REQUEST_BINARIES)
    )


def test_kubernetes_go_mod_maps_every_staging_module_to_its_release() -> None:
    group = load_groups()["kubernetes"]
    go_mod = render_go_mod(group)
    assert "\nrequire k8s.io/kubernetes v1.34.4\n" in go_mod
    replaces = re.findall(r"^\t(\S+) => (\S+) (\S+)$", go_mod, flags=re.MULTILINE)
    assert len(replaces) == len(group.replace) == 31
    for source, target, version in replaces:
        assert source == target
        assert source.startswith("k8s.io/")
        assert version == "v0.34.4"
    assert ("k8s.io/client-go", "k8s.io/client-go", "v0.34.4") in replaces


def test_etcd_go_mod_pins_the_sibling_modules_to_the_server_release() -> None:
    group = load_groups()["etcd"]
    go_mod = render_go_mod(group)
    assert f"require go.etcd.io/etcd/server/v3 {group.version}" in go_mod
    for module in ("api/v3", "client/pkg/v3", "client/v3", "pkg/v3"):
        assert f"\tgo.etcd.io/etcd/{module} => go.etcd.io/etcd/{module} {group.version}\n" in go_mod


def test_a_module_without_local_replaces_gets_no_replace_block() -> None:
    go_mod = render_go_mod(load_groups()["kwok"])
    assert "replace" not in go_mod
    assert "require sigs.k8s.io/kwok v0.7.0" in go_mod


def test_tools_go_blank_imports_every_main_package_behind_a_build_tag() -> None:
    tools = render_tools_go(load_groups()["kubernetes"])
    assert tools.startswith("//go:build tools\n")
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        assert f'\t_ "k8s.io/kubernetes/cmd/{name}"\n' in tools


def test_kubernetes_ldflags_stamp_the_release_into_both_version_packages() -> None:
    flags = render_ldflags(load_groups()["kubernetes"]).split(" ")
    assert flags[:2] == ["-s", "-w"]
    stamps = dict(flag.split("=", 1) for flag in flags[2:] if "=" in flag)
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert stamps[f"{package}.gitVersion"] == "v1.34.4"
        assert stamps[f"{package}.gitMajor"] == "1"
        assert stamps[f"{package}.gitMinor"] == "34"
        assert stamps[f"{package}.gitTreeState"] == "clean"


def test_helm_and_kwok_ldflags_fill_their_placeholders() -> None:
    groups = load_groups()
    assert f"-X helm.sh/helm/v3/internal/version.version={groups['helm'].version}" in render_ldflags(
        groups["helm"]
    )
    assert "-X sigs.k8s.io/kwok/pkg/consts.Version=0.7.0" in render_ldflags(groups["kwok"])


def test_go_build_command_is_trimmed_stripped_and_targets_the_main_package() -> None:
    group = load_groups()["kubernetes"]
    argv = go_build_argv(group, "kube-scheduler", "/tmp/out")
    assert argv[:3] == ["go", "build", "-trimpath"]
    assert argv[argv.index("-o") + 1] == "/tmp/out"
    assert argv[-1] == "k8s.io/kubernetes/cmd/kube-scheduler"
    assert argv[argv.index("-ldflags") + 1].startswith("-s -w -X ")


def _document(**overrides: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "module": "example.com/m",
        "version": "v1.2.3",
        "binaries": {"m": "example.com/m/cmd/m"},
    }
    group.update(overrides)
    return {"g": group}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": "1.2.3"}, "vMAJOR.MINOR.PATCH"),
        ({"binaries": {}}, "[g.binaries] is empty"),
        ({"replace": ["example.com/x"]}, "no `replace_version`"),
        ({"ldflags": {"a.b": "{nope}"}}, "unknown placeholder"),
        ({"colour": "blue"}, "unknown field(s) ['colour']"),
        ({"replace": "example.com/x", "replace_version": "v1.0.0"}, "must be a list of strings"),
    ],
)
def test_a_malformed_group_is_rejected_naming_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(VersionsError) as caught:
        parse_groups(_document(**overrides))
    assert message in str(caught.value)


def test_a_group_missing_its_module_is_rejected() -> None:
    document = _document()
    del document["g"]["module"]
    with pytest.raises(VersionsError, match="missing required field 'module'"):
        parse_groups(document)


def test_one_binary_declared_by_two_groups_is_rejected() -> None:
    document = _document()
    document["h"] = dict(document["g"])
    with pytest.raises(VersionsError, match="declared by both"):
        parse_groups(document)


def test_an_unknown_binary_name_lists_the_known_ones() -> None:
    with pytest.raises(VersionsError, match=r"known binaries: .*kube-apiserver"):
        group_of("kube-proxy", load_groups())


def _fake_binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_kubebuilder_assets_win_over_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    version = load_groups()["etcd"].version
    cached = _fake_binary(binary_cache_path("etcd", version))
    assert cached == tmp_path / "cache" / "grok-operator" / "bin" / f"etcd-{version}" / "etcd"
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    found = locate_binary("etcd")
    assert found is not None
    assert (found.source, found.path) == ("cache", cached)

    assets = _fake_binary(tmp_path / "assets" / "etcd")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets.parent))
    found = locate_binary("etcd")
    assert found is not None
    assert (found.source, found.path) == ("KUBEBUILDER_ASSETS", assets)


def test_a_binary_missing_from_the_assets_folder_falls_back_to_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path / "assets"))  # envtest ships no kwok
    assert locate_binary("kwok") is None
    cached = _fake_binary(binary_cache_path("kwok", load_groups()["kwok"].version))
    found = locate_binary("kwok")
    assert found is not None
    assert found.path == cached


def test_a_non_executable_cached_file_does_not_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    path = binary_cache_path("helm", load_groups()["helm"].version)
    path.parent.mkdir(parents=True)
    path.write_text("half written")
    assert locate_binary("helm") is None


def test_without_go_the_error_says_how_to_get_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BuildError, match="KUBEBUILDER_ASSETS"):
        find_go()
