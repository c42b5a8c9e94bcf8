"""Bad data and changing shapes inside traced code, where nothing can raise: run in subprocesses
(``traced_checks.py``), since an out-of-bounds read kills the process it happens in.

- In-graph validation: an invalid class index, length, probability or variance under
  ``mx.compile`` or ``mx.vmap`` makes that example's loss and gradient ``nan``, and only its.
- ``mx.compile(..., shapeless=True)`` over three batch sizes equals eager for every
  ``lossfn.functional`` loss and for ``reduce``/``batched`` compositions; BCE and CTC, whose
  cores are ``mx.custom_function``s, get MLX's error instead, and a vmapped user loss an error
  or ``nan``, never a wrong number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from loss_table import ROWS

SCRIPT = Path(__file__).with_name("traced_checks.py")


def run_checks(which: str) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), which], capture_output=True, text=True, timeout=600, cwd=SCRIPT.parent)
    assert done.returncode == 0, f"the process died (code {done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def invalid() -> dict:
    return run_checks("invalid")


@pytest.fixture(scope="module")
def shapeless() -> dict:
    return run_checks("shapeless")


INVALID_CASES = [
    "cross_entropy compiled",
    "cross_entropy smoothed and weighted compiled",
    "nll_loss vmapped",
    "weighted nll_loss vmapped",
    "multi_margin_loss compiled",
    "multi_margin_loss vmapped",
    "multilabel_margin_loss compiled",
    "binary_cross_entropy compiled",
    "gaussian_nll_loss compiled",
    "ctc_loss input_lengths > T compiled",
    "ctc_loss bad labels compiled",
    "ctc_loss target_lengths > S compiled",
]


@pytest.mark.parametrize("name", INVALID_CASES)
def test_invalid_data_under_tracing_is_nan_in_value_and_gradient(invalid, name):
    value, grad = np.array(invalid[name]["value"]), np.array(invalid[name]["grad"])
    batch_axis = 1 if name.startswith("ctc") else 0  # CTC's log_probs are (T, N, C)
    grad_nan = np.isnan(np.moveaxis(grad, batch_axis, 0).reshape(len(value), -1)).any(axis=1)
    assert np.isfinite(value[0]) and not grad_nan[0], "the valid example is untouched"
    assert np.isnan(value[1:]).all(), f"invalid examples must cost nan, got {value}"
    assert grad_nan[1:].all(), "and their gradients must be nan"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_functional_loss_compiles_shapeless(shapeless, name):
    results = shapeless[name]
    if ROWS[name].shapeless:
        assert results == ["equal"] * 3
    elif name == "binary_cross_entropy":  # an mx.custom_function: MLX refuses it, clearly
        assert all("CustomTransforms cannot infer output shapes" in r for r in results)
    else:  # ctc_loss: its scan is shaped by the batch; MLX raises
        assert all(r.startswith("error") for r in results)


@pytest.mark.parametrize(
    "name",
    [
        "reduce(cross_entropy, 'mean')",
        "reduce(ignore_index(smooth_labels(weighted(cross_entropy))))",
        "reduce(rescaled(mse_loss), 'mean')",
        "batched(huber_loss)",
        "reduce(multi_margin_loss, 'sum')",
    ],
)
def test_transform_compositions_compile_shapeless(shapeless, name):
    assert shapeless[name] == ["equal"] * 3


def test_a_vmapped_loss_under_shapeless_never_gives_a_wrong_number(shapeless):
    first, *later = shapeless["a vmapped user loss"]
    assert first == "equal"
    assert all(r == "nan" or r.startswith("error") for r in later)
