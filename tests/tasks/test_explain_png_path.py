"""The explanation drawing is PNG data: it goes only to a .png file."""

from __future__ import annotations

import pytest

from kgzsl.errors import InputError
from kgzsl.tasks.explain import check_png_path, explain_png


@pytest.mark.parametrize("name", ["why.jpg", "why.png.bak", "why"])
def test_explain_png_refuses_other_suffixes_before_drawing(tmp_path, name):
    with pytest.raises(InputError, match=r"the drawing is PNG data; give a file name ending in \.png, e\.g\. .*why"):
        explain_png({}, tmp_path / name)  # an empty result: the check comes before any drawing
    assert not (tmp_path / name).exists()


def test_any_case_of_png_is_a_png(tmp_path):
    assert check_png_path(tmp_path / "why.PNG") == tmp_path / "why.PNG"
    assert check_png_path(str(tmp_path / "why.png")) == tmp_path / "why.png"
