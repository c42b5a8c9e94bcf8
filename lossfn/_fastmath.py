"""Cheap transcendentals for MLX's CPU backend, as accurate as MLX's own.

``mx.compile`` on the CPU writes each fused kernel as a scalar C++ loop, so a transcendental
costs what its scalar code costs (measured per element on an AMD EPYC, Zen 5): ``mx.exp``
10.5 ns (a Cephes polynomial whose ``fma`` and ``floor`` become library calls), ``log1p`` 12 ns,
``logaddexp`` 29 ns, but the C library's ``powf`` 4-5 ns and ``logf`` 2.3 ns. So:

- :func:`exp` is ``e ** x`` through ``powf``, corrected for ``e``'s float32 rounding
  (:func:`e_power` uncorrected);
- :func:`exp_nonpositive` is the same for ``x <= 0``, clamped off ``powf``'s slow path;
- :func:`log1p` is one ``logf`` with a correction term, without a ``where`` (a ``where`` on
  data of random sign compiles to a mispredicted branch: 5 ns), whose gradient is
  ``log``'s alone.

Only float32 on the CPU takes these paths; other dtypes and devices call MLX's own. (A
polynomial exp in plain arithmetic, 2.5 ns, needs a bit cast for its ``2**k``, which a
shapeless compile cannot trace.)
"""

from __future__ import annotations

import math

import mlx.core as mx

# e rounded to float32 is e ** (1 + _DELTA): e32 ** x = e ** x * e ** (_DELTA x). The factor
# (1 - _DELTA x) undoes it to below float32's resolution (|_DELTA x| < 3e-6 where e ** x is finite).
_DELTA = -3.0367860004432146e-08
# Below this e ** x is 0 in float32 (its smallest subnormal is e ** -103.3): the clamp keeps the
# correction finite at x = -inf, where 0 * inf would be nan.
_UNDERFLOW = -104.0
# powf's fast path ends near here: below it powf takes 18 ns per element, not 5 (measured).
_SLOW_BELOW = -87.0


def _cheap(x: mx.array) -> bool:
    return x.dtype == mx.float32 and mx.default_device().type == mx.DeviceType.cpu


def e_power(x: mx.array) -> mx.array:
    r""":math:`e_{32}^{x} = e^{x (1 + \delta)}`: ``powf`` alone, relative error :math:`3 \cdot 10^{-8} |x|`.

    For exponents whose error does not matter (a term added to 1 in a log-add-exp).
    """
    return mx.power(math.e, x) if _cheap(x) else mx.exp(x)


def exp(x: mx.array) -> mx.array:
    r""":math:`e^x`, as :math:`e_{32}^{x} (1 - \delta x)` with :math:`e_{32} = e^{1 + \delta}`, float32's ``e``.

    For any ``x`` (overflow, subnormals, ``inf`` and NaN as ``mx.exp``). Relative error within
    2e-7, below ``mx.exp``'s (measured), at half its cost on the CPU.
    """
    return _corrected(mx.maximum(x, _UNDERFLOW), x) if _cheap(x) else mx.exp(x)


def exp_nonpositive(x: mx.array) -> mx.array:
    r""":math:`e^x` for :math:`x \le 0`, with ``x`` clamped at -87 (:math:`e^{-87} = 1.6 \cdot 10^{-38}`).

    For terms added to something of order 1 (a log-sum-exp shifted by its maximum), where the
    clamp changes no float32 sum and keeps ``powf`` on its fast path. A clamped term has
    gradient 0 (at most 1.6e-38 in truth).
    """
    if not _cheap(x):
        return mx.exp(x)
    x = mx.maximum(x, _SLOW_BELOW)
    return _corrected(x, x)


def _corrected(clamped: mx.array, x: mx.array) -> mx.array:
    """``e32 ** x (1 - _DELTA clamped)``: the correction from an ``x`` clamped where ``e ** x`` is 0."""
    return mx.power(math.e, x) * (1 - _DELTA * clamped)


def log1p(u: mx.array) -> mx.array:
    r""":math:`\log(1 + u)` for :math:`-1 \le u \le 1`, with one ``log``:

    .. math:: \log w - \frac{(w - 1) - u}{w}, \quad w = 1 + u \text{ rounded}

    The second term is the first-order correction for the rounding of ``w`` (exact by
    Sterbenz's lemma), so the relative error is that of ``log`` plus :math:`u^2/2 \cdot 2^{-24}`.
    At ``u = -1`` it is ``-inf`` (``w`` is clamped in the divisor only).
    """
    if not _cheap(u):
        return mx.log1p(u)
    w = 1 + u
    # The correction's own gradient is 0 in exact arithmetic: autodiff through it would cost
    # more than the rest of the backward, so the gradient is log's, 1 / w.
    return mx.log(w) - mx.stop_gradient(((w - 1) - u) / mx.maximum(w, 1e-30))
