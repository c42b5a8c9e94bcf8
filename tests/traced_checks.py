"""Checks that could crash the process, run by ``test_traced`` in a subprocess of their own.

``python traced_checks.py invalid`` prints, as JSON, the per-example losses and gradients of
every loss given invalid data inside ``mx.compile`` and ``mx.vmap`` (where nothing can raise);
``python traced_checks.py shapeless`` prints, for every ``lossfn.functional`` loss and some
``reduce`` / ``batched`` compositions compiled with ``shapeless=True``, whether three batch
sizes gave the eager result, or the error MLX raised. An out-of-bounds read would kill the
process instead, which the test sees.
"""

from __future__ import annotations

import json
import sys

import mlx.core as mx
import numpy as np
from loss_table import ROWS, to_mx

import lossfn
import lossfn.functional as F
import transforms as T

C = 3
X = mx.array(np.random.default_rng(0).normal(size=(4, C)).astype(np.float32))
BAD_INDEX = mx.array([0, 10**6, -5, C])  # every entry but the first is invalid


def _traced(transform, loss, *args):
    """Per-example values and input gradients of ``loss`` (``reduction='none'``), both traced by ``transform``."""
    grad = mx.grad(lambda x, *rest: mx.sum(loss(x, *rest)))
    return transform(loss)(*args), transform(grad)(*args)


def invalid() -> dict[str, dict]:
    lp = mx.log(mx.full((5, 2, 4), 0.25))
    compiled, vmapped = mx.compile, mx.vmap
    cases = {
        "cross_entropy compiled": (compiled, lambda x, y: F.cross_entropy(x, y, reduction="none"), X, BAD_INDEX),
        "cross_entropy smoothed and weighted compiled": (
            compiled,
            lambda x, y: F.cross_entropy(x, y, weight=mx.ones(C), label_smoothing=0.1, reduction="none"),
            X,
            BAD_INDEX,
        ),
        "nll_loss vmapped": (vmapped, lossfn.nll_loss, X, BAD_INDEX),
        "weighted nll_loss vmapped": (vmapped, lambda x, y: T.weighted(lossfn.nll_loss)(x, y, mx.ones(C)).value, X, BAD_INDEX),
        "multi_margin_loss compiled": (compiled, lambda x, y: F.multi_margin_loss(x, y, reduction="none"), X, BAD_INDEX),
        "multi_margin_loss vmapped": (vmapped, lossfn.multi_margin_loss, X, BAD_INDEX),
        "multilabel_margin_loss compiled": (
            compiled,
            lambda x, y: F.multilabel_margin_loss(x, y, reduction="none"),
            X,
            mx.array([[0, -1, 2], [5, 1, -1], [-3, 0, -1], [0, 1, C]]),
        ),
        "binary_cross_entropy compiled": (
            compiled,
            lambda x, y: F.binary_cross_entropy(x, y, reduction="none"),
            mx.array([0.5, 1.5, -0.1, 0.3]),
            mx.array([0.5, 0.5, 0.5, 2.0]),
        ),
        "gaussian_nll_loss compiled": (
            compiled,
            lambda v, x: F.gaussian_nll_loss(x, x * 0, v, reduction="none"),
            mx.array([1.0, -1.0, -1e-3, -5.0]),
            mx.ones(4),
        ),
        "ctc_loss input_lengths > T compiled": (
            compiled,
            lambda lp, il: F.ctc_loss(lp, mx.array([[1, 2], [1, 1]]), il, mx.array([2, 2]), reduction="none"),
            lp,
            mx.array([5, 9]),
        ),
        "ctc_loss bad labels compiled": (
            compiled,
            lambda lp, t: F.ctc_loss(lp, t, mx.array([5, 5]), mx.array([2, 2]), reduction="none"),
            lp,
            mx.array([[1, 2], [0, 7]]),  # the blank, and a label >= C
        ),
        "ctc_loss target_lengths > S compiled": (
            compiled,
            lambda lp, tl: F.ctc_loss(lp, mx.array([[1, 2], [1, 3]]), mx.array([5, 5]), tl, reduction="none"),
            lp,
            mx.array([2, 3]),
        ),
    }
    out = {}
    for name, (transform, loss, *args) in cases.items():
        value, grad = _traced(transform, loss, *args)
        out[name] = {"value": np.asarray(value).tolist(), "grad": np.asarray(grad).tolist()}
    return out


def shapeless() -> dict[str, list]:
    compositions = {
        "reduce(ignore_index(smooth_labels(weighted(cross_entropy))))": (
            lambda x, y: T.reduce(T.ignore_index(T.smooth_labels(T.weighted(lossfn.cross_entropy), 0.1, linear=True), 1))(x, y, mx.ones(5)),
            "cross_entropy",
        ),
        "reduce(cross_entropy, 'mean')": (lambda x, y: T.reduce(lossfn.cross_entropy, "mean")(x, y), "cross_entropy"),
        "reduce(rescaled(mse_loss), 'mean')": (lambda x, y: T.reduce(T.rescaled(lossfn.mse_loss, normalize=True))(x, y, y * 0 + 2), "mse_loss"),
        "batched(huber_loss)": (lambda x, y: T.batched(lossfn.huber_loss)(x, y), "mse_loss"),
        "reduce(multi_margin_loss, 'sum')": (lambda x, y: T.reduce(lossfn.multi_margin_loss, "sum")(x, y), "cross_entropy"),
        "a vmapped user loss": (lambda x, y: T.reduce(lambda a, b: mx.logsumexp(a) - mx.take(a, b))(x, y), "cross_entropy"),
    }
    cases = {name: (row.ours, name) for name, row in ROWS.items()} | compositions
    out = {}
    for name, (fn, row_name) in cases.items():
        row = ROWS[row_name]
        reduction = {"reduction": row.reductions[-1]} if fn is row.ours else {}
        loss = lambda *a, fn=fn, kw=reduction: fn(*a, **kw)  # noqa: E731
        compiled = mx.compile(loss, shapeless=True)
        results = []
        for n in (6, 11, 3):
            arrays = [to_mx(a) for a in row.make(np.random.default_rng(n), n)]
            arrays = arrays[:2] if fn is not row.ours else arrays
            try:
                got, want = np.asarray(compiled(*arrays)), np.asarray(loss(*arrays))
                same = got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
                results.append("equal" if same else "nan" if np.isnan(got).all() else "wrong")
            except ValueError as err:
                results.append(f"error: {err}")
        out[name] = results
    return out


if __name__ == "__main__":
    print(json.dumps({"invalid": invalid, "shapeless": shapeless}[sys.argv[1]]()))
