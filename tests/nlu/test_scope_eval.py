"""AUROC and message loading for the out-of-scope report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlu.scope_eval import auroc, load_messages


@pytest.mark.parametrize(
    ("negatives", "positives", "expected"),
    [([1, 2, 3], [4, 5, 6], 1.0), ([4, 5], [1, 2], 0.0), ([1, 2, 3], [1, 2, 3], 0.5), ([1, 3], [2, 4], 0.75)],
)
def test_auroc(negatives: list[float], positives: list[float], expected: float) -> None:
    assert auroc(np.array(negatives, float), np.array(positives, float)) == pytest.approx(expected)


def test_load_messages(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("messages:\n- hi there\n- 42\n")
    (tmp_path / "b.txt").write_text("one\n\n two \n")
    (tmp_path / "c.yml").write_text("- not a mapping\n")
    assert load_messages(tmp_path / "a.yml") == ["hi there", "42"]
    assert load_messages(tmp_path / "b.txt") == ["one", "two"]
    with pytest.raises(ValueError, match="messages"):
        load_messages(tmp_path / "c.yml")
