"""Taxonomy files: YAML and CSV spell the same entries, with their line numbers; file-level errors."""

from __future__ import annotations

import re

import pytest

from kgzsl.errors import InputError, NotFoundError
from kgzsl.graph.taxonomy import TaxonomyError
from kgzsl.graph.taxonomy_files import read_taxonomy

GOOD = """\
- name: e-scooter
  parents: [scooter.n.02, motor vehicle]
  description: a standing scooter with an electric motor
  aliases: electric scooter
- name: folding e-scooter
  parents: e-scooter
- okapi
"""


def _write(tmp_path, text, name="t.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_and_csv_spell_the_same_taxonomy(tmp_path):
    yaml_entries = read_taxonomy(_write(tmp_path, GOOD))
    csv_entries = read_taxonomy(_write(tmp_path, "name,parents,description,aliases\n"
                                       "e-scooter,scooter.n.02;motor vehicle,a standing scooter with an electric "
                                       "motor,electric scooter\nfolding e-scooter,e-scooter,,\nokapi,,,\n", "t.csv"))
    assert [e.spec() for e in yaml_entries] == [e.spec() for e in csv_entries]
    assert yaml_entries[0].parents == ("scooter.n.02", "motor vehicle") and yaml_entries[0].aliases == ("electric scooter",)
    assert yaml_entries[1].parents == ("e-scooter",) and yaml_entries[2].spec() == {"name": "okapi"}
    assert [e.where.rsplit(":", 1)[1] for e in yaml_entries] == ["1", "5", "7"]
    assert [e.where.rsplit(":", 1)[1] for e in csv_entries] == ["2", "3", "4"]


def test_csv_problems_and_a_missing_file(tmp_path):
    with pytest.raises(TaxonomyError, match=r"t\.csv:1: the first line must name the columns"):
        read_taxonomy(_write(tmp_path, "title,parents\na,lamp\n", "t.csv"))
    with pytest.raises(TaxonomyError, match=r"t\.csv:3: 4 fields but the header names 2"):
        read_taxonomy(_write(tmp_path, "name,parents\na,lamp\nb,lamp,x,y\n", "t.csv"))
    with pytest.raises(NotFoundError, match="taxonomy file not found"):
        read_taxonomy(tmp_path / "missing.yaml")
    assert read_taxonomy(_write(tmp_path, ""), allow_empty=True) == []  # a run's concepts.yaml, all removed


def test_a_byte_order_mark_is_dropped_and_other_encodings_are_refused(tmp_path):
    bom = b"\xef\xbb\xbf"  # what Excel's "CSV UTF-8" (and some Windows editors) write first
    csv_file = tmp_path / "t.csv"
    csv_file.write_bytes(bom + b"name,parents,description\nair fryer,kitchen appliance,a countertop oven\n")
    assert [e.spec() for e in read_taxonomy(csv_file)] == [
        {"name": "air fryer", "parents": ["kitchen appliance"], "description": "a countertop oven"}]
    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_bytes(bom + "- name: café\n  parents: restaurant\n".encode())
    assert [(e.name, e.where.rsplit(":", 1)[1]) for e in read_taxonomy(yaml_file)] == [("café", "1")]
    csv_file.write_bytes("name,parents\ncafé,restaurant\n".encode("latin-1"))
    with pytest.raises(TaxonomyError, match=r"t\.csv is not UTF-8 text .*; save it as UTF-8 \(in Excel: 'CSV UTF-8'\)"):
        read_taxonomy(csv_file)
    csv_file.write_bytes("name,parents\ncafé,restaurant\n".encode("utf-16"))  # Excel's "Unicode Text"
    with pytest.raises(TaxonomyError, match="is not UTF-8 text"):
        read_taxonomy(csv_file)


@pytest.mark.parametrize("text, name", [
    ("", "t.yaml"), ("# my classes\n\n", "t.yaml"), ("[]\n", "t.yaml"), ("\ufeff", "t.yml"),
    ("", "t.csv"), ("name,parents,description,aliases\n", "t.csv"), ("\ufeffname,parents\n\n,\n", "t.csv"),
])
def test_a_file_without_entries_is_refused_naming_it_and_what_an_entry_looks_like(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    example = "'e-scooter,motor scooter," if name.endswith(".csv") else "'- {name: e-scooter, parents: [motor scooter]"
    with pytest.raises(TaxonomyError, match=rf"^{re.escape(str(path))} holds no entries; a taxonomy file needs "
                       rf".*{re.escape(example)}") as info:
        read_taxonomy(path)
    assert isinstance(info.value, InputError) and "docs/taxonomy.md" in str(info.value)
    assert read_taxonomy(path, allow_empty=True) == []


def test_a_file_of_another_extension_is_read_as_yaml_and_a_failure_says_so(tmp_path):
    (tmp_path / "lab.txt").write_text("name,parents\ne-scooter,motor scooter\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match=r"(?s)must hold a YAML list.*read as YAML: the file's name ends in "
                                            r"'\.txt'.*must end in \.csv"):
        read_taxonomy(tmp_path / "lab.txt")
    (tmp_path / "lab.yml").write_text("name: a\n", encoding="utf-8")
    with pytest.raises(TaxonomyError) as caught:
        read_taxonomy(tmp_path / "lab.yml")
    assert "read as YAML" not in str(caught.value)  # a YAML file's problem is only its own
