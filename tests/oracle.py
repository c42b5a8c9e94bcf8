"""PyTorch as the test oracle: run the same loss on the same data in both, compare values and gradients."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import numpy as np
import torch

RTOL, ATOL = 1e-5, 1e-6


def rng(*key: object) -> np.random.Generator:
    """A generator seeded by ``key``, the same in every process (``hash`` of a str is salted per run)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def to_mx(x: Any) -> Any:
    return None if x is None else mx.array(np.asarray(x))


def to_torch(x: Any, requires_grad: bool = False) -> Any:
    if x is None:
        return None
    t = torch.tensor(np.asarray(x))
    return t.requires_grad_(True) if requires_grad else t


def assert_close(ours: Any, theirs: Any, rtol: float = RTOL, atol: float = ATOL, what: str = "value") -> None:
    a = np.asarray(ours)
    b = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch's {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what, equal_nan=True)


def check_against_torch(
    ours: Callable[..., mx.array],
    theirs: Callable[..., torch.Tensor],
    inputs: Sequence[Any],
    wrt: Sequence[int] = (0,),
    rtol: float = RTOL,
    atol: float = ATOL,
    grad_rtol: float | None = None,
    grad_atol: float | None = None,
) -> None:
    """Compare ``ours(*mx inputs)`` with ``theirs(*torch inputs)``: value, then the gradient
    of ``sum(out * r)`` (``r`` a fixed random cotangent) with respect to each input in ``wrt``.
    Inputs are NumPy arrays (or None); both sides see exactly the same numbers.
    """
    mx_in = [to_mx(x) for x in inputs]
    th_in = [to_torch(x, requires_grad=i in wrt) for i, x in enumerate(inputs)]
    out_th = theirs(*th_in)
    out_mx = ours(*mx_in)
    assert_close(out_mx, out_th, rtol, atol)
    if not wrt:
        return
    r = np.random.default_rng(0).uniform(0.5, 1.5, size=tuple(out_th.shape)).astype(np.float32)
    (out_th * torch.tensor(r)).sum().backward()

    def scalar(*xs: mx.array) -> mx.array:
        args = list(mx_in)
        for i, x in zip(wrt, xs):
            args[i] = x
        return mx.sum(ours(*args) * mx.array(r))

    grads = mx.grad(scalar, argnums=list(range(len(wrt))))(*[mx_in[i] for i in wrt])
    grads = (grads,) if isinstance(grads, mx.array) else grads
    for i, g in zip(wrt, grads):
        expected = th_in[i].grad
        assert expected is not None, f"torch gave no gradient for input {i}"
        assert_close(g, expected, grad_rtol or rtol, grad_atol or atol, what=f"gradient wrt input {i}")
