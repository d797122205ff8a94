"""Output files: a folder (or a file in the way) where a file is to be written is one clear error, early."""

from __future__ import annotations

import pytest

from kgzsl.errors import OutputError
from kgzsl.utils.io import atomic_path, check_output_file, write_json


def test_check_output_file_refuses_a_folder_and_names_the_option(tmp_path):
    (tmp_path / "existdir").mkdir()
    with pytest.raises(OutputError, match=r"cannot write .*existdir: it is a folder; give the path of a file, "
                                          r"e\.g\. .*existdir/result\.json") as exc:
        check_output_file(tmp_path / "existdir", "--json-out", example="result.json")
    assert exc.value.cli_text().startswith(f"--json-out {tmp_path / 'existdir'} is a folder;")


def test_check_output_file_refuses_a_file_in_the_way_and_creates_nothing(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"cannot write .*notes\.txt/sub/out\.json: Not a directory"):
        check_output_file(tmp_path / "notes.txt" / "sub" / "out.json")
    assert check_output_file(tmp_path / "new" / "out.json") == tmp_path / "new" / "out.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # the probe left nothing, made no folder


def test_atomic_write_to_a_folder_is_an_output_error_and_leaves_no_temporary(tmp_path):
    (tmp_path / "existdir").mkdir()
    ran = []
    with pytest.raises(OutputError, match="existdir: it is a folder"):
        with atomic_path(tmp_path / "existdir") as tmp:
            ran.append(tmp)  # never reached: refused before the content is computed
    with pytest.raises(OutputError, match="existdir: it is a folder"):
        write_json(tmp_path / "existdir", {"a": 1})
    assert ran == [] and sorted(p.name for p in tmp_path.iterdir()) == ["existdir"]


def test_a_folder_made_while_writing_is_an_output_error_too(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(OutputError, match="out.json: it is a folder"):
        with atomic_path(target) as tmp:
            tmp.write_text("{}")
            target.mkdir()  # another process took the name meanwhile
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"] and target.is_dir()


def test_the_write_check_leaves_nothing_in_a_writable_folder(tmp_path):
    from kgzsl.utils.io import check_writable

    check_writable(tmp_path / "a" / "b")
    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []
