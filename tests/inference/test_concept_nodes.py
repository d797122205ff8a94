"""Parents of added concepts: a word of several senses is fixed once, so the sense used is said."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from kgzsl.inference.concept_nodes import resolve_parent
from kgzsl.inference.labels import ResolvedLabel


def _clf(found: ResolvedLabel) -> SimpleNamespace:
    return SimpleNamespace(resolver=SimpleNamespace(resolve=lambda spec: found))


def test_an_ambiguous_parent_word_is_warned_about_with_the_synset_names_to_write(caplog):
    mouse = ResolvedLabel("mouse", 7, "n03793489", "mouse.n.04", ("mouse.n.01",), (3,))
    with caplog.at_level(logging.WARNING, logger="kgzsl"):
        assert resolve_parent(_clf(mouse), None, None, "mouse") == 7
    assert "parent 'mouse' is ambiguous: using mouse.n.04" in caplog.text and "(mouse.n.01)" in caplog.text


def test_a_parent_given_as_a_synset_name_or_of_one_sense_is_taken_quietly(caplog):
    named = ResolvedLabel("mouse.n.01", 3, "n02330245", "mouse.n.01", ("mouse.n.04",), ())
    single = ResolvedLabel("tabby", 5, "n02123045", "tabby.n.01", (), ())
    with caplog.at_level(logging.WARNING, logger="kgzsl"):
        assert resolve_parent(_clf(named), None, None, "mouse.n.01") == 3
        assert resolve_parent(_clf(single), None, None, "tabby") == 5
    assert "ambiguous" not in caplog.text
