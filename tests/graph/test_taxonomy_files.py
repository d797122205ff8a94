"""Taxonomy files: YAML and CSV spell the same entries, with their line numbers; file-level errors."""

from __future__ import annotations

import pytest

from kgzsl.errors import NotFoundError
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
    assert read_taxonomy(_write(tmp_path, "")) == []
