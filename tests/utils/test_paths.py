"""Where shipped files are found and where graph names, graph paths and config names resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgzsl.utils.paths import (data_home, graph_data_dir, resolve_config, resolve_graph_dir, shipped_dir,
                               shipped_names)


def test_shipped_files_are_found():
    assert {"dgp", "sgcn", "gcnz"} <= set(shipped_names("configs"))
    assert {"imagenet1k", "imagenet21k", "2-hops", "3-hops", "all"} <= set(shipped_names("wnids"))
    assert (shipped_dir("wnids") / "NOTICE.md").is_file() and (shipped_dir("wnids") / "LICENSE-dgp-splits").is_file()
    with pytest.raises(ValueError, match="unknown kind of shipped files 'models'"):
        shipped_dir("models")


def test_data_home_follows_kgzsl_home_then_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("KGZSL_HOME", str(tmp_path / "k"))
    assert data_home() == tmp_path / "k"
    monkeypatch.delenv("KGZSL_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_home() == tmp_path / "xdg" / "kgzsl"


def test_bare_names_go_to_the_user_data_folder_outside_a_checkout(elsewhere, tmp_path):
    assert graph_data_dir() == tmp_path / "home" / "graph_data"
    assert resolve_graph_dir("g_small") == tmp_path / "home" / "graph_data" / "g_small"


def test_bare_names_go_to_the_local_graph_data_folder_in_a_checkout(elsewhere):
    (elsewhere / "graph_data").mkdir()
    assert resolve_graph_dir("g_small") == elsewhere / "graph_data" / "g_small"


def test_kgzsl_graph_data_overrides(elsewhere, tmp_path, monkeypatch):
    (elsewhere / "graph_data").mkdir()
    monkeypatch.setenv("KGZSL_GRAPH_DATA", str(tmp_path / "graphs"))
    assert resolve_graph_dir("g_small") == tmp_path / "graphs" / "g_small"


@pytest.mark.parametrize("spec, rel", [("./g", "g"), ("sub/g", "sub/g"), ("../g", "../g")])
def test_paths_are_relative_to_the_current_directory(elsewhere, spec, rel):
    assert resolve_graph_dir(spec) == (elsewhere / rel).absolute()
    assert resolve_graph_dir(spec).is_absolute()


def test_an_existing_folder_of_the_current_directory_is_a_path(elsewhere):
    (elsewhere / "g_small").mkdir()
    assert resolve_graph_dir("g_small") == elsewhere / "g_small"
    assert resolve_graph_dir(elsewhere / "x") == elsewhere / "x"
    with pytest.raises(ValueError, match="empty graph name"):
        resolve_graph_dir(" ")


def test_config_names_resolve_to_the_shipped_configs(elsewhere):
    shipped = shipped_dir("configs") / "dgp.yaml"
    assert resolve_config("dgp") == shipped and resolve_config("dgp.yaml") == shipped
    with pytest.raises(FileNotFoundError, match=r"configs/dgp.yaml; .*--config conse \| dgp-reference \| dgp-sgcn-conse \| dgp-sgcn \| dgp \| gcnz \| sgcn"):
        resolve_config("configs/dgp.yaml")  # a path that does not exist here is not a name
    with pytest.raises(FileNotFoundError, match="config file not found: nope"):
        resolve_config("nope")


def test_an_existing_config_file_wins_over_a_shipped_name(elsewhere):
    (elsewhere / "dgp").write_text("name: mine\n")
    assert resolve_config("dgp") == Path("dgp")
    (elsewhere / "configs").mkdir()
    (elsewhere / "configs" / "dgp.yaml").write_text("name: mine\n")
    assert resolve_config("configs/dgp.yaml") == Path("configs/dgp.yaml")
