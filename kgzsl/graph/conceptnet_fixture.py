"""A small ConceptNet assertions file in the exact format of the official dump, for tests and demos.

The real ``conceptnet-assertions-5.7.0.csv.gz`` cannot be shipped or downloaded here; this writes a
few hundred lines about six ImageNet classes (okapi, zebra, giraffe, dog, cat, motor scooter) with
what the real file holds: WordNet-derived concepts with ``/n/wn/<label>`` sense tags, other senses
of the class words (``/c/en/dog/n/wn/person``), Wiktionary sense tags, ``dbpedia/...`` relations,
``ExternalURL`` links, non-English concepts (including the ``/c/enm/`` prefix trap), duplicate
assertions from different datasets, and, on request, deliberately malformed lines.

Example:
    >>> info = write_fixture("/tmp/conceptnet-fixture.csv.gz")  # doctest: +SKIP
    >>> info["malformed"], info["english"]  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

from kgzsl.graph.conceptnet_reader import ConceptClass
from kgzsl.utils.io import atomic_path

__all__ = ["write_fixture", "FIXTURE_CLASSES", "CAT_FILLERS"]

FIXTURE_CLASSES = (
    ConceptClass("n02439398", "okapi.n.01", ("okapi", "Okapia_johnstoni"),
                 "similar to the giraffe but smaller with much shorter neck and stripe on the legs", ("animal",),
                 ("okapi", "Okapia_johnstoni")),
    ConceptClass("n02391049", "zebra.n.01", ("zebra",),
                 "any of several fleet black-and-white striped African equines", ("animal",), ("zebra",)),
    ConceptClass("n02439033", "giraffe.n.01", ("giraffe", "camelopard", "Giraffa_camelopardalis"),
                 "tallest living quadruped; having a spotted coat and small horns and very long neck and legs; "
                 "of savannahs of tropical Africa", ("animal",), ("giraffe", "camelopard", "Giraffa_camelopardalis")),
    ConceptClass("n02084071", "dog.n.01", ("dog", "domestic_dog", "Canis_familiaris"),
                 "a member of the genus Canis (probably descended from the common wolf) that has been domesticated "
                 "by man since prehistoric times; occurs in many breeds", ("animal",),
                 ("dog", "domestic_dog", "Canis_familiaris")),
    ConceptClass("n02121620", "cat.n.01", ("cat", "true_cat"),
                 "feline mammal usually having thick soft fur and no ability to roar: domestic cats; wildcats",
                 ("animal",), ("cat", "true_cat")),
    ConceptClass("n03791053", "motor_scooter.n.01", ("motor_scooter", "scooter"),
                 "a wheeled vehicle with small wheels and a low-powered gasoline engine geared to the rear wheel",
                 ("artifact",), ("motor_scooter",)),  # "scooter" is first the foot-propelled one
)

#: 25 weak (weight 0.1) RelatedTo neighbours of /c/en/cat: a top-k below 25 must drop them
CAT_FILLERS = ("alley", "basket", "blanket", "box", "carpet", "cushion", "fence", "garden", "jar", "kitchen",
               "ladder", "lamp", "mat", "nap", "pillow", "porch", "roof", "rug", "shelf", "sink", "sofa", "sunbeam",
               "towel", "wall", "yarn")

_DATASETS = {  # dataset → (license, sources)
    "wn": ("/d/wordnet/3.1", "cc:by/4.0", [{"contributor": "/s/resource/wordnet/rdf/3.1"}]),
    "omcs": ("/d/conceptnet/4/en", "cc:by/4.0", [{"activity": "/s/activity/omcs/omcs1_possibly_free_text",
                                                  "contributor": "/s/contributor/omcs/dev"}]),
    "wikt": ("/d/wiktionary/en", "cc:by-sa/4.0", [{"contributor": "/s/resource/wiktionary/en",
                                                   "process": "/s/process/wikiparsec/2"}]),
    "verb": ("/d/verbosity", "cc:by/4.0", [{"contributor": "/s/resource/verbosity"}]),
    "dbp": ("/d/dbpedia/en", "cc:by-sa/4.0", [{"contributor": "/s/resource/dbpedia/2015/en"}]),
}

A = "/c/en/"
_WN = "/n/wn/animal"
# (relation, start, end, weight, dataset) under /c/en/; "~" stands for the /n/wn/animal sense tag
_CORE_TABLE = """
IsA            okapi~                       giraffid~                      2.0    wn
Synonym        okapia_johnstoni~            okapi~                         2.0    wn
RelatedTo      okapi                        giraffe                        1.0    wikt
AtLocation     okapi/n                      congo                          1.0    omcs
AtLocation     okapi                        zoo                            1.0    omcs
HasA           okapi                        stripe                         1.0    omcs
IsA            okapi                        mammal                         1.0    omcs
dbpedia/genus  okapi                        okapia                         0.5    dbp
IsA            giraffe~                     giraffid~                      2.0    wn
Synonym        camelopard~                  giraffe~                       2.0    wn
HasProperty    giraffe                      tall                           2.828  omcs
HasA           giraffe                      long_neck                      3.464  omcs
AtLocation     giraffe                      africa                         2.0    omcs
AtLocation     giraffe/n                    africa                         1.0    wikt  # same edge once mapped: weights add up
AtLocation     giraffe                      zoo                            1.0    omcs
IsA            giraffe                      mammal                         1.0    omcs
RelatedTo      giraffe/n                    savanna                        0.5    wikt
IsA            zebra~                       equine~                        2.0    wn
HasA           zebra                        stripe                         2.0    omcs
AtLocation     zebra                        africa                         1.0    omcs
AtLocation     zebra                        zoo                            1.0    omcs
RelatedTo      zebra                        horse                          1.0    wikt
IsA            zebra                        mammal                         1.0    omcs
HasProperty    zebra                        black_and_white                1.0    omcs
RelatedTo      zebra_crossing/n             zebra                          0.5    wikt
IsA            dog~                         canine~                        2.0    wn
Synonym        domestic_dog~                dog~                           2.0    wn
IsA            dog/n/wn/person              unpleasant_woman/n/wn/person   2.0    wn
Synonym        dog/v/wn/motion              chase/v/wn/motion              2.0    wn
RelatedTo      dog/n/wikt/en_1              puppy                          1.0    wikt
IsA            dog                          pet                            3.464  omcs
CapableOf      dog                          bark                           4.0    omcs
AtLocation     dog                          kennel                         2.0    omcs
IsA            dog                          mammal                         1.0    omcs
RelatedTo      dog                          cat                            1.0    wikt
Antonym        dog/n                        cat/n                          0.5    wikt
Desires        dog                          bone                           2.0    omcs
HasA           dog                          fur                            1.0    omcs
NotDesires     dog                          bath                           1.0    omcs
IsA            cat~                         feline~                        2.0    wn
Synonym        true_cat~                    cat~                           2.0    wn
IsA            cat/n/wn/person              man/n/wn/person                2.0    wn
IsA            cat                          pet                            3.464  omcs
CapableOf      cat                          purr                           2.0    omcs
Desires        cat                          milk                           1.0    omcs
HasA           cat                          fur                            1.0    omcs
HasA           cat                          whisker                        2.0    omcs
IsA            cat                          mammal                         1.0    omcs
IsA            motor_scooter/n/wn/artifact  wheeled_vehicle/n/wn/artifact  2.0    wn
Synonym        scooter/n/wn/artifact        motor_scooter/n/wn/artifact    2.0    wn
IsA            scooter~                     duck~                          2.0    wn
UsedFor        scooter                      transportation                 1.0    omcs
HasA           scooter                      wheel                          2.0    omcs
RelatedTo      scooter                      moped                          1.0    wikt
RelatedTo      scooter                      motorcycle                     1.0    wikt
AtLocation     scooter                      street                         1.0    omcs
IsA            scooter                      vehicle                        1.0    omcs
# second hop
IsA            mammal~                      vertebrate~                    2.0    wn
IsA            mammal                       animal                         1.0    omcs
IsA            giraffid~                    ruminant~                      2.0    wn
IsA            equine~                      odd_toed_ungulate~             2.0    wn
IsA            canine~                      carnivore~                     2.0    wn
IsA            feline~                      carnivore~                     2.0    wn
IsA            horse                        mammal                         1.0    omcs
RelatedTo      horse                        zebra                          1.0    wikt
IsA            africa                       continent                      1.0    omcs
UsedFor        zoo                          see_animals                    1.0    omcs
IsA            pet                          animal                         1.0    omcs
AtLocation     pet                          home                           1.0    omcs
RelatedTo      stripe                       line                           0.5    wikt
IsA            moped                        motor_vehicle                  1.0    omcs
IsA            motorcycle                   vehicle                        1.0    omcs
UsedFor        vehicle                      transportation                 1.0    omcs
PartOf         wheel                        vehicle                        1.0    omcs
RelatedTo      milk                         cow                            1.0    wikt
RelatedTo      fur                          hair                           1.0    wikt
IsA            carnivore                    animal                         1.0    omcs
"""


def _table(text: str) -> list[tuple[str, str, str, float, str]]:
    """The ``(relation, start, end, weight, dataset)`` rows of a table like :data:`_CORE_TABLE`."""
    rows = []
    for line in text.splitlines():
        fields = line.split("#")[0].split()  # "#" starts a comment
        if fields:
            rel, start, end, weight, dataset = fields
            rows.append((rel, A + start.replace("~", _WN), A + end.replace("~", _WN), float(weight), dataset))
    return rows


_CORE = _table(_CORE_TABLE)

_TRANSLATIONS = {"okapi": {"fr": "okapi", "de": "okapi", "es": "okapi", "ja": "オカピ"},
                 "zebra": {"fr": "zèbre", "de": "zebra", "es": "cebra", "ja": "シマウマ"},
                 "giraffe": {"fr": "girafe", "de": "giraffe", "es": "jirafa", "ja": "キリン"},
                 "dog": {"fr": "chien", "de": "hund", "es": "perro", "ja": "犬"},
                 "cat": {"fr": "chat", "de": "katze", "es": "gato", "ja": "猫"},
                 "scooter": {"fr": "scooter", "de": "motorroller", "es": "escúter", "ja": "スクーター"}}


def _line(rel: str, start: str, end: str, weight: float | str, dataset: str, **extra: Any) -> str:
    name, lic, sources = _DATASETS[dataset]
    info = {"dataset": name, "license": lic, "sources": sources, "weight": weight, **extra}
    text = json.dumps(info, ensure_ascii=False, sort_keys=True)  # the dump's key order and separators
    return f"/a/[/r/{rel}/,{start}/,{end}/]\t/r/{rel}\t{start}\t{end}\t{text}"


def _non_english() -> list[str]:
    lines = []
    for en, words in _TRANSLATIONS.items():
        for lang, word in words.items():
            lines.append(_line("Synonym", f"/c/{lang}/{word}/n", f"{A}{en}/n", 1.0, "wikt"))
            lines.append(_line("RelatedTo", f"{A}{en}", f"/c/{lang}/{word}", 0.5, "wikt"))
            lines.append(_line("IsA", f"/c/{lang}/{word}", f"/c/{lang}/animal", 1.0, "wikt"))
        lines.append(_line("ExternalURL", f"{A}{en}", f"http://dbpedia.org/resource/{en.title()}", 1.0, "dbp"))
    lines.append(_line("RelatedTo", "/c/enm/dogge", A + "dog", 1.0, "wikt"))  # Middle English: not /c/en/
    lines.append(_line("FormOf", "/c/enm/cattes", "/c/enm/catte", 1.0, "wikt"))
    return lines


def _malformed() -> list[tuple[bytes, str]]:
    ok = _line("IsA", A + "dog", A + "animal", 1.0, "omcs")
    head = ok.rsplit("\t", 1)[0]
    return [(head.encode(), "fields"),  # JSON column missing
            ((ok + "\textra").encode(), "fields"),
            (b"", "fields"),  # blank line
            ((head + '\t{"dataset": "/d/conceptnet/4/en", "weight": 1.0').encode(), "json"),
            ((head + '\t{"dataset": "/d/conceptnet/4/en", "license": "cc:by/4.0"}').encode(), "weight_missing"),
            (_line("IsA", A + "cat", A + "animal", "heavy", "omcs").encode(), "weight_invalid"),
            (_line("IsA", A + "cat", A + "animal", 0.0, "omcs").encode(), "weight_invalid"),
            (_line("IsA", A, A + "animal", 1.0, "omcs").encode(), "uri"),  # empty term
            (ok.replace("\t/r/IsA\t", "\tIsA\t").encode(), "uri"),
            (_line("IsA", A + "zebra", A + "animal", 1.0, "omcs").encode().replace(b"animal\t", b"anim\xffl\t"),
             "encoding")]


def _extra(count: int, rng: random.Random) -> list[str]:
    """Filler with the real file's mix: ~10% English-English, ~80% other languages, ~10% mixed/URL."""
    langs = ["fr", "de", "es", "it", "ja", "ru", "pt", "nl", "fi", "zh"]
    rels = ["RelatedTo", "Synonym", "IsA", "FormOf", "DerivedFrom", "AtLocation", "UsedFor", "HasContext"]
    out = []
    for i in range(count):
        r, x = rng.random(), f"term{rng.randrange(count)}"
        rel, ds = rng.choice(rels), rng.choice(["wikt", "omcs", "verb"])
        if r < 0.1:
            out.append(_line(rel, f"{A}{x}", f"{A}word{i}/n", 1.0, ds, surfaceText=f"[[{x}]] is related to [[word]]"))
        elif r < 0.9:
            lang = rng.choice(langs)
            out.append(_line(rel, f"/c/{lang}/{x}", f"/c/{lang}/word{i}", 1.0, ds))
        else:
            out.append(_line("ExternalURL", f"{A}{x}", f"http://sw.opencyc.org/concept/Mx{i}", 1.0, "dbp"))
    return out


def write_fixture(path: str | os.PathLike, malformed: bool = True, extra_lines: int = 0,
                  seed: int = 0) -> dict[str, Any]:
    """Write a gzip assertions file in the official ConceptNet 5.7 format.

    Args:
        path: Output file (``.csv.gz``).
        malformed: Include the deliberately malformed lines (one or two per reason of
            :class:`~kgzsl.graph.conceptnet_reader.ReadStats`).
        extra_lines: Append this many filler lines with the real dump's language mix (benchmarks).
        seed: Seed of the line order and the filler.

    Returns:
        The ground truth: ``lines``, ``english`` (English-to-English well-formed lines),
        ``non_english``, ``malformed`` and ``malformed_by_reason``, ``classes`` (the
        :data:`FIXTURE_CLASSES`), ``path``.
    """
    rng = random.Random(seed)
    core = [_line(*row) for row in _CORE]
    core += [_line("RelatedTo", A + "cat", A + w, 0.1, "verb") for w in CAT_FILLERS]
    other = _non_english()
    bad = _malformed() if malformed else []
    body = [(s.encode(), "english") for s in core] + [(s.encode(), "non_english") for s in other] + bad
    rng.shuffle(body)
    extra = _extra(extra_lines, rng)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fh:  # crash-safe, see kgzsl.utils.io
        for line, _ in body:
            fh.write(line + b"\n")
        for line in extra:
            fh.write(line.encode() + b"\n")
    kinds = Counter(kind for _, kind in body)
    extra_en = sum(1 for s in extra if s.split("\t")[2].startswith(A) and s.split("\t")[3].startswith(A))
    return {"path": str(path), "lines": len(body) + len(extra), "english": kinds["english"] + extra_en,
            "non_english": kinds["non_english"] + len(extra) - extra_en, "malformed": len(bad),
            "malformed_by_reason": dict(Counter(kind for _, kind in bad)), "classes": list(FIXTURE_CLASSES)}
