"""The README's Python examples run, and the demo prints every loss beside PyTorch's value."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import lossfn.functional as F
from lossfn.__main__ import DEMOS

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102


def test_demo_covers_every_functional_loss():
    named = {"cross_entropy", "kl_div", "binary_cross_entropy", "binary_cross_entropy_with_logits"}
    public = {name for name in dir(F) if name.endswith("_loss") or name in named}
    public &= {name for name in dir(F) if not name.startswith("_") and callable(getattr(F, name))}
    assert public <= {demo.name for demo in DEMOS}


def test_demo_runs_and_agrees_with_torch():
    out = subprocess.run([sys.executable, "-m", "lossfn"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = [line.split() for line in out.splitlines()[2:]]
    assert len(rows) == len(DEMOS)
    for name, ours, theirs, _ in rows:
        assert abs(float(ours) - float(theirs)) <= 1e-5 * max(1.0, abs(float(theirs))), name
