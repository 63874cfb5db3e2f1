"""The Go-module build of Kubernetes 1.37's pieces: the recipe's table agrees with the modules it ships."""

from __future__ import annotations

import re

import pytest

from chaoskit.errors import ProvisionError
from chaoskit.provision import gomodules

REL = gomodules.release("1.37")


def _gomod(piece: gomodules.Piece) -> str:
    return gomodules._gomod(REL, piece)["go.mod"].decode()


@pytest.mark.parametrize("piece", REL.pieces, ids=lambda p: p.name)
def test_each_shipped_module_requires_its_piece_at_the_version_the_table_names(piece: gomodules.Piece) -> None:
    text = _gomod(piece)
    assert re.search(rf"^\s+{re.escape(piece.module)} {re.escape(piece.version)}\b", text, re.MULTILINE), piece
    assert f"{piece.module} {piece.version} h1:" in gomodules._gomod(REL, piece)["go.sum"].decode()
    tools = set(re.findall(r"^\s*(?:tool\s+)?([\w./-]+)$", text.split("\ntool", 1)[1], re.MULTILINE)) - {"(", ")"}
    assert set(piece.packages) <= tools | {piece.module}, (piece.packages, tools)
    assert len(piece.packages) == len(piece.outputs)
    # No toolchain line: GOTOOLCHAIN=local builds with the machine's Go, which must satisfy the go line.
    (line,) = re.findall(r"^go (\S+)$", text, re.MULTILINE)
    assert line.startswith("1.26") and "toolchain" not in text


def test_kubernetes_replaces_every_staging_module_with_its_published_release() -> None:
    (kubernetes,) = [p for p in REL.pieces if p.name == "kubernetes"]
    text = _gomod(kubernetes)
    replaced = dict(re.findall(r"^replace (k8s\.io/[\w-]+) => \1 (v\S+)$", text, re.MULTILINE))
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/src, which a
    # dependency's replace cannot do: the 31 of 1.37 are replaced here, each with v0.37.2.
    assert len(replaced) == 31 and set(replaced.values()) == {"v0.37.2"}, replaced
    assert {"k8s.io/api", "k8s.io/client-go", "k8s.io/kubelet", "k8s.io/cri-streaming"} <= set(replaced)


def test_the_kubernetes_binaries_carry_their_version_in_both_places_kubeadm_reads() -> None:
    flags = gomodules._stamps("v1.37.2")
    pairs = [flags[i + 1] for i in range(0, len(flags), 2)]
    assert all(flags[i] == "-X" for i in range(0, len(flags), 2))
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"{package}.gitVersion=v1.37.2" in pairs and f"{package}.gitMinor=37" in pairs
        assert f"{package}.gitMajor=1" in pairs


def test_only_runc_is_built_with_cgo_and_as_a_pie() -> None:
    assert [p.name for p in REL.pieces if p.cgo] == ["runc"] == [p.name for p in REL.pieces if p.pie]
    (etcd,) = [p for p in REL.pieces if p.name == "etcd"]
    assert etcd.outputs == ("etcd",)  # not "server", the package's last element


def test_go_version_m_output_is_read_for_the_module_and_its_version() -> None:
    shown = (
        "/x/kubeadm: go1.26.8\n\tpath\tk8s.io/kubernetes/cmd/kubeadm\n\tmod\tchaoskit.local/build/kubernetes\t(devel)\n"
        "\tdep\tk8s.io/kubernetes\tv1.37.2\th1:abc=\n\tdep\tk8s.io/api\tv0.0.0\n\t=>\tk8s.io/api\tv0.37.2\th1:x=\n"
    )
    assert gomodules.embeds(shown, "k8s.io/kubernetes", "v1.37.2")
    assert not gomodules.embeds(shown, "k8s.io/kubernetes", "v1.37.1")
    # A command of the required module itself: go version -m names it as the main package's module.
    main = "/x/kube-apiserver: go1.26.8\n\tpath\tk8s.io/kubernetes/cmd/kube-apiserver\n"
    main += "\tmod\tk8s.io/kubernetes\tv1.37.2\th1:A=\n"
    assert gomodules.embeds(main, "k8s.io/kubernetes", "v1.37.2")
    assert not gomodules.embeds(shown, "k8s.io/kubernetes/cmd/kubeadm", "v1.37.2")  # the path line is no dep


def test_go_versions_are_read_and_older_lines_refused() -> None:
    assert gomodules._go_minor("go1.26.8") == 26 and gomodules._go_minor("go1.27rc1") == 0
    assert gomodules._go_minor("devel go1.27-abc") == 0 and gomodules._go_minor("go1.19") == 19


def test_an_unknown_line_names_the_lines_there_are() -> None:
    with pytest.raises(ProvisionError, match=r"no Go-module build of Kubernetes 1\.31: choose one of 1\.37"):
        gomodules.release("1.31")


def test_a_pieces_cache_entry_changes_with_its_recipe() -> None:
    (cni,) = [p for p in REL.pieces if p.name == "cni"]
    other = gomodules.Piece(cni.name, cni.module, cni.version, cni.packages, cni.outputs, ldflags=("-s",))
    assert gomodules._digest(REL, cni) != gomodules._digest(REL, other)
    assert gomodules.entry(REL, cni).name.startswith("gobuild-cni-v1.10.0-")
