"""Every tutorial runs top to bottom (fast mode) as a student would run it: `python tutorials/NN_name.py`.

A tutorial that raises, or whose expected-output comments drift from what it computes (the tutorials
assert their key numbers), fails the suite.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def test_there_is_a_tutorial_per_deck_section():
    numbers = {p.name[:2] for p in TUTORIALS}
    assert {f"{i:02d}" for i in range(1, 13)} <= numbers, f"missing tutorials: {sorted(numbers)}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    env = dict(os.environ, MINICOMPRESS_FAST="1", MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
