"""The tracked analysis notebooks are exactly what the template makes: a template change reaches every notebook
(``write_notebooks``), and regenerating an unchanged notebook changes nothing (stable cell ids)."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.analysis.notebooks import COMPARISONS, notebook_path, write_notebooks

ROOT = Path(__file__).resolve().parents[2]


def test_tracked_notebooks_are_the_template_output(tmp_path: Path) -> None:
    made = write_notebooks(tmp_path)
    assert len(made) == len(COMPARISONS) + 1
    for path in made:
        tracked = ROOT / "notebooks" / path.name
        assert tracked.exists(), f"{path.name} is missing: run write_notebooks(Path('notebooks'))"
        assert json.loads(tracked.read_text()) == json.loads(path.read_text()), (
            f"{path.name} differs from the template: run write_notebooks(Path('notebooks'))"
        )


def test_regenerating_is_byte_stable(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in write_notebooks(tmp_path / "a")]
    second = [p.read_bytes() for p in write_notebooks(tmp_path / "b")]
    assert first == second
    assert notebook_path(tmp_path, 19, "read_split").name == "19_read_split.ipynb"
