"""Reading taxonomy files: YAML (a list of entries) or CSV (a header line naming the columns).

The format is described in :mod:`kgzsl.graph.taxonomy`; both spellings become the same entry
list, checked by :func:`~kgzsl.graph.taxonomy.parse_taxonomy` with each entry's line number, so
that every problem is reported at once as ``file:line: entry: what is wrong``.

Example:
    >>> entries = read_taxonomy("catalogue.yaml")
    >>> [e.name for e in entries]
    ['e-scooter', 'folding e-scooter', 'okapi']
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from kgzsl.errors import NotFoundError
from kgzsl.graph.taxonomy import FIELDS, TaxonomyEntry, TaxonomyError, parse_taxonomy

__all__ = ["read_taxonomy"]


def read_taxonomy(path: str | Path, allow_empty: bool = False) -> list[TaxonomyEntry]:
    """Read and check a taxonomy file: ``.yaml`` / ``.yml`` (a list) or ``.csv`` (a header line first).

    The text is UTF-8; a leading byte-order mark (Excel's "CSV UTF-8", some Windows editors) is dropped.

    Args:
        path: The file.
        allow_empty: Accept a file without entries (a run's own ``concepts.yaml`` once its last
            concept is removed); else such a file is refused, as it is surely not what was meant.

    Raises:
        NotFoundError: If the file does not exist.
        TaxonomyError: If it is not UTF-8 text, cannot be parsed, holds no entries (unless
            ``allow_empty``), or listing every bad entry (see :func:`parse_taxonomy`).
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"taxonomy file not found: {path}")
    csv_file = path.suffix.lower() == ".csv"
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8, without the byte-order mark Excel writes first
    except UnicodeDecodeError as exc:
        raise TaxonomyError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8"
                            + (" (in Excel: 'CSV UTF-8')" if csv_file else "")) from None
    try:
        entries = _read_csv(path, text) if csv_file else _read_yaml(path, text)
    except TaxonomyError as exc:  # "lab.txt" holding CSV: say how the file was read
        if csv_file or path.suffix.lower() in (".yaml", ".yml"):
            raise
        raise TaxonomyError(f"{exc}\n(read as YAML: the file's name ends in {path.suffix or 'no extension'!r}, "
                            "not .yaml, .yml or .csv; a CSV file must end in .csv)") from None
    if not entries and not allow_empty:
        example = ("one line per class after the header line (name,parents,description,aliases), e.g. "
                   "'e-scooter,motor scooter,a standing scooter with an electric motor'" if csv_file else
                   "a YAML list with one entry per class, e.g. '- {name: e-scooter, parents: [motor scooter], "
                   "description: a standing scooter with an electric motor}' or '- okapi'")
        raise TaxonomyError(f"{path} holds no entries; a taxonomy file needs {example} (see docs/taxonomy.md)")
    return entries


def _read_yaml(path: Path, text: str) -> list[TaxonomyEntry]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader)
        items = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{path} is not valid YAML ({exc}); a taxonomy is a list of entries "
                            f"({', '.join(FIELDS)})") from None
    if items is None:
        return []
    if not isinstance(items, list):
        raise TaxonomyError(f"{path} must hold a YAML list of entries ({', '.join(FIELDS)}), one '- name: ...' "
                            "per class; it holds a " + type(items).__name__)
    return parse_taxonomy(items, str(path), [item.start_mark.line + 1 for item in node.value])


def _read_csv(path: Path, text: str) -> list[TaxonomyEntry]:
    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0][1]]
    if "name" not in header or len(set(header)) != len(header):
        raise TaxonomyError(f"{path}:{rows[0][0]}: the first line must name the columns, 'name' among them "
                            f"(name,parents,description,aliases,sense), got {','.join(header)}")
    items, lines = [], []
    for line, row in rows[1:]:
        if len(row) > len(header):
            raise TaxonomyError(f"{path}:{line}: {len(row)} fields but the header names {len(header)}; quote "
                                "fields that contain commas")
        item: dict[str, Any] = {}
        for key, cell in zip(header, row):
            cell = cell.strip()
            if not cell:
                continue
            item[key] = [p.strip() for p in cell.split(";") if p.strip()] if key in ("parents", "aliases") else cell
        items.append(item)
        lines.append(line)
    return parse_taxonomy(items, str(path), lines)
