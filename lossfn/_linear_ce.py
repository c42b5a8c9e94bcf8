"""Cross-entropy of a linear layer's logits, in tiles: the ``(N, V)`` logits are never formed.

For tokens ``h`` ``(N, D)``, a vocabulary ``W`` ``(V, D)`` and a bias ``b`` ``(V,)``, the logits
are ``z = cap(h W^T + b)``, with the optional soft cap ``cap(r) = c tanh(r / c)`` (Gemma 2). The
core returns, per token, the three numbers every cross-entropy is assembled from::

    lse  = log sum_c exp(z_c)                      (the log-partition; PaLM's z-loss squares it)
    ce_y = lse - z_y                               (against a class index y)
    ce_s = sum_c s_c (lse - z_c)                   (against class scores s: a distribution, a
                                                    class weight, or both; (V,) or (N, V))

Forward. The tokens and the vocabulary are cut into tiles of at most ``tile`` logits. Each
tile ``k`` of a row gives its maximum ``m_k``, ``l_k = sum exp(z - m_k)``,
``a_k = sum s (m_k - z)`` and ``t_k = sum s``; then, with ``M = max_k m_k``::

    lse  = M + log sum_k l_k exp(m_k - M)          (the online log-sum-exp)
    ce_y = (M - z_y) + log sum_k l_k exp(m_k - M)
    ce_s = sum_k a_k + (lse - m_k) t_k

Every term is a difference of nearby numbers taken where it is small, and ``l_k`` is a staged
sum (``accurate_sum``), so the tiles add no rounding beyond the unfused loss's, for logits of
any magnitude.

Backward. With ``p = softmax(z)`` and cotangents ``g_lse``, ``g_y``, ``g_s`` per token, the
vjp recomputes each tile's logits and takes::

    dz = (g_lse + g_y + g_s sum_c s_c) p - g_y onehot(y) - g_s s,   dz *= 1 - (z / c)^2 (capped)
    dh += dz W_k,   dW_k += dz^T h,   db_k += sum_rows dz,   ds = g_s (lse - z)

so memory beyond the inputs and their gradients is a few dozen tiles (and the pieces of dW
until they are joined). A vmap rule folds a mapped
axis into the tokens, so ``mx.vmap`` of a per-token loss (and ``mx.vmap(mx.grad(...))``)
runs the tiled pass once over the whole batch. Tiles compute in float32 whatever the
inputs' dtype (bfloat16 weights are cast one tile at a time); gradients come back in each
input's dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import mlx.core as mx

from transforms._sums import accurate_sum

from . import _fastmath as fm

Array = mx.array
Scores = Literal["none", "classes", "tokens"]


class Config(NamedTuple):
    """What one core computes: static, so a core is built (and cached) per configuration."""

    bias: bool  # a bias (V,) follows W
    target: bool  # class indices (N,) follow
    scores: Scores  # class scores s follow: none, shared (V,), or per token (N, V)
    cap: float | None  # the soft cap c, or None
    tile: int  # logits per tile


# Logits per tile. MLX keeps a few dozen tiles alive (see the order of evaluation below): on
# the CPU, tiles of 1 MB cost no time against 4 MB ones (measured at N = 1024, D = 128,
# V = 16384) and bound the extra memory to ~20-40 MB; a GPU wants larger matrix products.
CPU_TILE = 1 << 18
GPU_TILE = 1 << 24


def default_tile() -> int:
    return CPU_TILE if mx.default_device().type == mx.DeviceType.cpu else GPU_TILE


def tiling(tokens: int, classes: int, tile: int) -> tuple[int, int]:
    """Tokens and classes per tile: whole rows of the vocabulary where they fit, else >= 128 classes."""
    width = min(classes, max(128, tile // max(tokens, 1)))
    return max(1, min(tokens, tile // width)), width


def _spans(size: int, step: int) -> list[tuple[int, int]]:
    return [(i, min(i + step, size)) for i in range(0, size, step)]


class _Inputs(NamedTuple):
    h: Array
    W: Array
    b: Array | None
    y: Array | None
    s: Array | None


def _unpack(config: Config, inputs: Sequence[Array]) -> _Inputs:
    h, W, *rest = inputs
    b = rest.pop(0) if config.bias else None
    y = rest.pop(0) if config.target else None
    s = rest.pop(0) if config.scores != "none" else None
    return _Inputs(h, W, b, y, s)


def _logits(config: Config, x: _Inputs, rows: tuple[int, int], cols: tuple[int, int]) -> Array:
    """One tile's logits ``z`` in float32."""
    h = x.h[rows[0] : rows[1]].astype(mx.float32)
    w = x.W[cols[0] : cols[1]].astype(mx.float32)
    # (h @ contiguous(w.T)): MLX's CPU product is twice as fast with the right operand row-major.
    raw = h @ mx.contiguous(w.T)
    if x.b is not None:
        raw = raw + x.b[cols[0] : cols[1]].astype(mx.float32)
    return soft_cap(raw, config.cap)


def _scores(x: _Inputs, rows: tuple[int, int], cols: tuple[int, int]) -> Array | None:
    if x.s is None:
        return None
    s = x.s[cols[0] : cols[1]] if x.s.ndim == 1 else x.s[rows[0] : rows[1], cols[0] : cols[1]]
    return s.astype(mx.float32)


def _target_logit(z: Array, y: Array, start: int) -> Array:
    """``z[n, y_n - start]`` where the target falls in the tile's classes, else 0."""
    local = y - start
    inside = (local >= 0) & (local < z.shape[1])
    picked = mx.take_along_axis(z, mx.where(inside, local, 0)[:, None], axis=1)[:, 0]
    return mx.where(inside, picked, 0.0)


# The order of evaluation. MLX runs a graph in reverse breadth-first order from its outputs, a
# few operations ahead of the computation. Tiles that meet only in one final stack (or
# concatenation) would sit at one depth and run side by side, their logits alive together.
# So each pass threads a chain through its tiles, and every result of a tile feeds the chain:
# the forward's running maximum, the backward's running ``dh``. A tile then runs in its turn,
# and the memory beyond the inputs and gradients is a few dozen tiles, whatever N and V.


def _tile_statistics(config: Config, x: _Inputs, y: Array | None, rows: tuple[int, int], cols: tuple[int, int]) -> Array:
    """``(rows, k)``: per token ``m``, ``l``, then ``z_y`` (with a target), then ``a``, ``t`` (with scores)."""
    z = _logits(config, x, rows, cols)
    m = mx.stop_gradient(mx.max(z, axis=1))
    parts = [m, accurate_sum(fm.exp_nonpositive(z - m[:, None]), axis=1)]
    if y is not None:
        parts.append(_target_logit(z, y[rows[0] : rows[1]], cols[0]))
    s = _scores(x, rows, cols)
    if s is not None:
        parts.append(mx.sum(s * (m[:, None] - z), axis=1))
        parts.append(mx.sum(s, axis=1) if s.ndim == 2 else mx.broadcast_to(mx.sum(s), m.shape))
    return mx.stack(parts, axis=1)


def _forward(config: Config, inputs: Sequence[Array]) -> tuple[Array, Array, Array]:
    x = _unpack(config, inputs)
    n, v = x.h.shape[0], x.W.shape[0]
    row_step, col_step = tiling(n, v, config.tile)
    y = None if x.y is None else x.y.astype(mx.int32)
    lse, ce_y, ce_s = [], [], []
    for rows in _spans(n, row_step):
        stats = [_tile_statistics(config, x, y, rows, cols) for cols in _spans(v, col_step)]
        # A chain (see above), of reductions: mx.compile would fuse a chain of mx.maximum into one kernel
        top = functools.reduce(lambda a, b: mx.max(mx.stack([a, b]), axis=0), (st[:, 0] for st in stats))
        stats = mx.stack(stats, axis=1)
        m, partial = stats[..., 0], stats[..., 1]  # (rows, tiles)
        log_l = mx.log(mx.sum(partial * fm.exp_nonpositive(m - top[:, None]), axis=1))
        row_lse = top + log_l
        lse.append(row_lse)
        ce_y.append((top - mx.sum(stats[..., 2], axis=1)) + log_l if y is not None else mx.zeros_like(top))
        if x.s is not None:
            a, t = stats[..., -2], stats[..., -1]
            ce_s.append(mx.sum(a, axis=1) + mx.sum((row_lse[:, None] - m) * t, axis=1))
        else:
            ce_s.append(mx.zeros_like(top))
    return tuple(mx.concatenate(part) if len(part) > 1 else part[0] for part in (lse, ce_y, ce_s))  # type: ignore[return-value]


class _Cotangents(NamedTuple):
    scale: Array  # (N,): g_lse + g_y + g_s sum_c s_c, the weight of p in dz
    g_y: Array
    g_s: Array
    lse: Array


def _tile_gradients(
    config: Config, x: _Inputs, y: Array | None, g: _Cotangents, rows: tuple[int, int], cols: tuple[int, int], dh_before: Array | None
) -> tuple[Array, Array, Array, Array | None]:
    """One tile's ``dh`` (the row's so far, this tile's included), ``dW``, ``db`` and ``ds``.

    The returned ``dh`` is a view of one array that holds all four: the chain of ``dh`` over
    the row's tiles then computes each tile's gradients in its turn (see above).
    """
    (r0, r1), (c0, c1) = rows, cols
    z = _logits(config, x, rows, cols)
    dz = g.scale[r0:r1, None] * fm.exp(z - g.lse[r0:r1, None])
    if y is not None:
        onehot = mx.arange(c0, c1)[None, :] == y[r0:r1, None]
        dz = dz - mx.where(onehot, g.g_y[r0:r1, None], 0.0)
    s = _scores(x, rows, cols)
    d_scores = None
    if s is not None:
        dz = dz - g.g_s[r0:r1, None] * s
        d_scores = g.g_s[r0:r1, None] * (g.lse[r0:r1, None] - z)
        d_scores = d_scores if s.ndim == 2 else mx.sum(d_scores, axis=0)
    if config.cap is not None:
        dz = dz * (1 - mx.square(z / config.cap))
    dh = dz @ x.W[c0:c1].astype(mx.float32)
    dh = dh if dh_before is None else dh_before + dh
    dW, db = dz.T @ x.h[r0:r1].astype(mx.float32), mx.sum(dz, axis=0)
    parts = [dh, dW, db] + ([] if d_scores is None else [d_scores])
    packed = mx.concatenate([p.reshape(-1) for p in parts])
    return packed[: dh.size].reshape(dh.shape), dW, db, d_scores


def _vjp(config: Config, primals: Sequence[Array], cotangents: Sequence[Array], outputs: Sequence[Array]) -> list[Array]:
    x = _unpack(config, primals)
    g_lse, g_y, g_s = (g.astype(mx.float32) for g in cotangents)
    n, v = x.h.shape[0], x.W.shape[0]
    row_step, col_step = tiling(n, v, config.tile)
    y = None if x.y is None else x.y.astype(mx.int32)
    scale = g_lse + g_y if x.s is None else g_lse + g_y + g_s * mx.sum(x.s.astype(mx.float32), axis=-1)
    g = _Cotangents(scale, g_y, g_s, outputs[0])
    dh, dW, db, ds = [], [], [], []
    for rows in _spans(n, row_step):
        dh_row, dW_row, db_row, ds_row = None, [], [], []
        for cols in _spans(v, col_step):
            dh_row, dW_k, db_k, ds_k = _tile_gradients(config, x, y, g, rows, cols, dh_row)
            dW_row.append(dW_k)
            db_row.append(db_k)
            if ds_k is not None:
                ds_row.append(ds_k)
        dh.append(dh_row)
        dW.append(mx.concatenate(dW_row))
        db.append(mx.concatenate(db_row))
        if ds_row:
            ds.append(mx.concatenate(ds_row, axis=-1))
    # Token tiles (beyond ``tile // 128`` tokens) each hold a (V, D) weight gradient until here.
    dh, dW, db = mx.concatenate(dh), sum(dW[1:], dW[0]), sum(db[1:], db[0])
    ds = None if not ds else (mx.concatenate(ds) if x.s.ndim == 2 else sum(ds[1:], ds[0]))
    grads = [dh.astype(x.h.dtype), dW.astype(x.W.dtype)]
    if x.b is not None:
        grads.append(db.astype(x.b.dtype))
    if x.y is not None:
        grads.append(mx.zeros_like(x.y))
    if ds is not None:
        grads.append(ds.astype(x.s.dtype))
    return grads


# The token axis of each input; W and a bias (V,) or class scores (V,) are shared.
def _token_axes(config: Config) -> tuple[bool, ...]:
    return (True, False) + ((False,) if config.bias else ()) + ((True,) if config.target else ()) + (
        (config.scores == "tokens",) if config.scores != "none" else ()
    )


def _vmap(config: Config, inputs: Sequence[Array], axes: Sequence[int | None]) -> tuple[tuple[Array, ...], tuple[int, ...]]:
    """Fold the vmapped axis into the tokens: ``M`` calls on ``N`` tokens are one call on ``M N``."""
    (m,) = {x.shape[a] for x, a in zip(inputs, axes) if a is not None}
    token = _token_axes(config)
    if any(a is not None for a, t in zip(axes, token) if not t):
        # A vocabulary per mapped call (rare): one tiled pass each.
        calls = [core(config)(*(x if a is None else mx.take(x, i, axis=a) for x, a in zip(inputs, axes))) for i in range(m)]
        return tuple(mx.stack(parts) for parts in zip(*calls)), (0, 0, 0)
    folded = []
    for x, a, t in zip(inputs, axes, token):
        if t:
            x = mx.moveaxis(x, a, 0) if a is not None else mx.broadcast_to(x[None], (m, *x.shape))
            x = x.reshape(-1, *x.shape[2:])
        folded.append(x)
    outputs = core(config)(*folded)
    return tuple(o.reshape(m, -1) for o in outputs), (0, 0, 0)


@functools.cache
def core(config: Config) -> Any:
    """The tiled pass for ``config``: ``(h, W[, b][, y][, s]) -> (lse, ce_y, ce_s)``, each ``(N,)`` float32."""
    fn = mx.custom_function(lambda *inputs: _forward(config, inputs))
    fn.vjp(functools.partial(_vjp, config))
    fn.vmap(functools.partial(_vmap, config))
    return fn


def soft_cap(z: Array, cap: float | None) -> Array:
    """Gemma 2's logit soft cap :math:`c \\tanh(z / c)`, or ``z`` for no cap."""
    return z if cap is None else cap * mx.tanh(z / cap)


def check_cap(cap: Any) -> float | None:
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not math.isfinite(cap) or cap <= 0:
        raise ValueError(f"softcap must be a positive number or None, got {cap!r}")
    return float(cap)
