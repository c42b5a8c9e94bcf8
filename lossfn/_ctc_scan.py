"""CTC's forward-backward algorithm as one scan over time, batched over examples.

States. The extended label sequence of a target ``l`` of length ``S`` is
``(blank, l_1, blank, l_2, ..., l_S, blank)``. Its blank states ``B_k`` (``k = 0..S``) and
label states ``A_k`` (the state of ``l_{k+1}``, ``k = 0..S-1``) are held in two arrays of
width ``W = S + 1``, one row per example; the label array ends with a padding state that no
path reaches (its emission is ``NEG``). Rolling the label array by one along ``k`` brings that
padding in as ``A_{-1}``, so a step reads every neighbour it needs with one roll.

Recursion, in log space, ``lse`` = log-add-exp, ``e_t`` the emissions at time t::

    alpha_t(B_k) = e_t(blank)   + lse(alpha_{t-1}(B_k), alpha_{t-1}(A_{k-1}))
    alpha_t(A_k) = e_t(l_{k+1}) + lse(alpha_{t-1}(A_k), alpha_{t-1}(B_k),
                                      alpha_{t-1}(A_{k-1}) if l_{k+1} != l_k)

The skip term reuses the blank update, ``lse(A_k, B_k, A_{k-1}) = lse(A_k, lse(B_k, A_{k-1}))``,
so a step costs two log-add-exps per pair of states. Sequences shorter than ``T`` run along;
alpha is read at each example's own last frame.

Two engines run the same recursion. On the CPU, outside traces, NumPy scans it
(:func:`_host_alphas`): its SIMD ``exp`` and ``log`` and its microsecond dispatch beat MLX's
compiled CPU kernels, which call the scalar ``powf`` and ``logf`` and cost several
microseconds each, and no kernel waits for g++ on a first call. Elsewhere (a GPU, or inside
a trace) each step is one compiled MLX function, called ``T`` times, and MLX evaluates the
graph of ``T`` steps at the end.

Backward. beta (from the end) is alpha of the problem read backwards, so the gradient needs
no second recursion: the batch and its reversal go through the scan together, as ``2 N``
examples. The MLX engine reverses each example's own frames and labels (gathers); the NumPy
one flips the whole padded problem, so that beta is alpha flipped back (views), and starts
each flipped example at its own frame and state (:func:`_host_posteriors`). The posterior of
a state is ``exp(alpha + beta - e - log p)`` (both include the emission ``e`` at t), and the
gradient of ``-log p`` with respect to a log-probability is minus the posterior of its states.

Why the scan runs outside autodiff. ``mx.compile`` inlines a compiled function called with
tracers, i.e. inside ``mx.grad``, ``mx.vmap`` or ``mx.compile``: a scan of ``T`` steps then
becomes ``~20 T`` unfused primitives (measured 4-13x slower than PyTorch), and the backward
pass of ``mx.grad`` is never compiled. The loss is therefore a ``custom_function`` whose
forward computes the value and, when autodiff may ask, the gradient; its vjp only scales that
gradient by the cotangent. Under ``mx.grad`` the forward evaluates its inputs and runs the
eager scan on plain copies of them (the forward is opaque to autodiff anyway). Outside
transformations only the alpha of the batch is computed. Inside ``mx.compile``, or while
``mx.vmap`` traces, nothing can be evaluated: the scan is then built inline (``mx.compile``
fuses it; ``mx.vmap`` throws it away for the vmap rule, which runs the eager scan on the
whole batch at once).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from transforms._classes import nan_unless
from transforms._tracing import transformation

from . import _checks as C
from . import _fastmath as fm

Array = mx.array
Lse = Callable[[Array, Array], Array]


class CompileThroughWarning(UserWarning):
    """``ctc_loss`` traced by ``mx.compile`` on the CPU: its first call compiles for seconds.

    Filter it (``warnings.filterwarnings("ignore", category=lossfn.CompileThroughWarning)``)
    to compile through CTC on purpose.
    """


# "log 0" that stays finite: NEG + x == NEG for any log-probability x, lse(NEG, NEG) == NEG,
# and no inf - inf can make a nan. A -inf log-probability is clamped to NEG.
NEG = -1e30
# A log-likelihood below this is an impossible alignment (possible ones are above -1e20).
IMPOSSIBLE = NEG / 2
# A log-posterior at or below this is exactly 0 (see ``_posterior``), in both engines.
POSTERIOR_FLOOR = -80.0
_EXP_FLOOR = np.exp(np.float32(POSTERIOR_FLOOR))


def _lse(a: Array, b: Array) -> Array:
    """``log(exp(a) + exp(b))`` for the compiled steps.

    ``max + log(1 + exp(min - max))``: ``log`` is several times cheaper than ``log1p`` on the
    CPU and its absolute error (< 6e-8) is below float32's resolution of a log-likelihood.
    The exponent is clamped at -17, below which ``1 + exp(d)`` rounds to 1 in float32: the
    clamp changes nothing and keeps ``powf`` off its slow path for the huge ``NEG``.
    """
    hi = mx.maximum(a, b)
    return hi + mx.log(1 + fm.e_power(mx.maximum(mx.minimum(a, b) - hi, -17.0)))


# --- one time step --------------------------------------------------------------------------


def _alpha_step(
    blank: Array, label: Array, blank_emit: Array, label_emit: Array, skip: Array, lse: Lse = _lse
) -> tuple[Array, Array]:
    """alpha at t from alpha at t-1, all ``(1, N, W)``.

    ``label[k]`` is ``A_k`` (padding at ``k = S``); ``skip[k]``: the jump ``A_{k-1} -> A_k``
    is allowed (the labels differ). ``blank_emit`` is a broadcast view: adding it is then a
    plain ``Add``, and MLX fuses the rest of the step into two kernels.
    """
    from_left = lse(blank, mx.roll(label, 1, axis=-1))  # lse(B_k, A_{k-1})
    into_label = mx.where(skip, from_left, blank)
    return blank_emit + from_left, label_emit + lse(label, into_label)


_alpha_compiled = mx.compile(_alpha_step)
_alpha_inline = functools.partial(_alpha_step, lse=mx.logaddexp)  # fewer ops to trace


# --- the scan and the gradient --------------------------------------------------------------


def _split(x: Array) -> list[Array]:
    """``x`` as its ``(1, ...)`` slices along time: one multi-output node."""
    return mx.split(x, x.shape[0], axis=0) if x.shape[0] > 1 else [x]


def _alphas(blank_emit: Array, label_emit: Array, labels: Array, step: Callable[..., tuple[Array, Array]]) -> tuple[Array, Array]:
    """alpha at t = -1..T-1 (the start, then each frame): ``(T + 1, N, W)`` blank, label states.

    ``blank_emit`` ``(T, N)``, ``label_emit`` ``(T, N, S)`` log-probabilities of the blank and
    of each target label, at least NEG; ``labels`` ``(N, S)``.
    """
    T, N, S = label_emit.shape
    blank_emit = mx.broadcast_to(blank_emit[..., None], (T, N, S + 1))
    label_emit = mx.concatenate([label_emit, mx.full((T, N, 1), NEG)], axis=2)
    no = mx.zeros((N, 1), dtype=mx.bool_)
    skip = mx.concatenate([no, labels[:, 1:] != labels[:, :-1], no], axis=1)[None]
    blank = mx.concatenate([mx.zeros((1, N, 1)), mx.full((1, N, S), NEG)], axis=2)
    label = mx.full((1, N, S + 1), NEG)
    blanks, labels_ = [blank], [label]
    for e_blank, e_label in zip(_split(blank_emit), _split(label_emit)):
        blank, label = step(blank, label, e_blank, e_label, skip)
        blanks.append(blank)
        labels_.append(label)
    return mx.concatenate(blanks, axis=0), mx.concatenate(labels_, axis=0)


# --- the same scan in NumPy, for the CPU --------------------------------------------------


def _host_lse(scratch: tuple[np.ndarray, np.ndarray]) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """:func:`_lse` in NumPy, written into ``out``, through two scratch arrays of its shape.

    ``max + log(1 + exp(min - max))``, as :func:`_lse`: NumPy's float32 ``log`` is SIMD and its
    ``log1p`` is not (on a 2-core AMD EPYC with AVX2, at 992 elements: ``log1p`` 8.1 µs against
    0.7 for the ``+ 1`` and 2.2 for ``log``). Without :func:`_lse`'s clamp at -17, which only
    keeps ``powf`` off its slow path.
    """
    hi, d = scratch
    maximum, minimum, subtract, exp, add, log = np.maximum, np.minimum, np.subtract, np.exp, np.add, np.log
    one = np.ones((), np.float32)  # a Python 1 costs NumPy 0.45 µs a call to convert

    # 100 calls a scan: the names are bound here, and ``out`` is positional (40 ns less a
    # call) where NumPy allows it (not for maximum and minimum).
    def lse(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        maximum(a, b, out=hi)
        minimum(a, b, out=d)
        subtract(d, hi, d)
        exp(d, d)
        add(d, one, d)
        log(d, d)
        add(hi, d, out)

    return lse


def _host_max(scratch: Any) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """``max`` in place of log-add-exp (no scratch needed): the Viterbi scores of :func:`best_path`."""
    return lambda a, b, out: np.maximum(a, b, out=out)


class _ScanArrays(NamedTuple):
    """The arrays of a scan of ``T`` frames over ``W = S + 1`` blank and ``S`` label states of
    ``N`` examples, and each step's views of them, made once (slicing them anew for every call
    took 28 µs at (50, 31, 32))."""

    blank: np.ndarray  # alpha of the blank states (T + 1, W, N)
    label: np.ndarray  # of the label states, between two rows of padding (T + 1, W + 1, N)
    blank_emit: np.ndarray  # the blank's emission spread over its states (T, W, N)
    label_emit: np.ndarray  # (T, S, N)
    from_left: np.ndarray  # lse(B_k, A_{k-1}) (W, N)
    scratch: tuple[tuple[np.ndarray, np.ndarray], ...]  # the two lse's, (W, N) and (S, N)
    # Per frame t: B_t, B_{t+1}, B_t's first S rows; the label rows -1..S-1 and 0..S-1 at t,
    # 0..S-1 at t + 1; the emissions.
    steps: list[tuple[np.ndarray, ...]]

    @classmethod
    def new(cls, T: int, S: int, N: int) -> _ScanArrays:
        W = S + 1
        blank, label = np.empty((T + 1, W, N), np.float32), np.empty((T + 1, W + 1, N), np.float32)
        blank_emit, label_emit = np.empty((T, W, N), np.float32), np.empty((T, S, N), np.float32)
        steps = list(zip(blank[:T], blank[1:], blank[:T, :S], label[:T, :W], label[:T, 1:W], label[1:, 1:W], blank_emit, label_emit))
        scratch = tuple((np.empty((rows, N), np.float32), np.empty((rows, N), np.float32)) for rows in (W, S))
        return cls(blank, label, blank_emit, label_emit, np.empty((W, N), np.float32), scratch, steps)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.blank, self.label, self.blank_emit, self.label_emit))


_KEPT = threading.local()
WORKSPACE_LIMIT = 1 << 24  # bytes of scan arrays a thread keeps for its next scan


def _scan_arrays(T: int, S: int, N: int) -> _ScanArrays:
    """:class:`_ScanArrays` of this shape: the thread's last ones where they have it, and kept
    (under ``WORKSPACE_LIMIT`` bytes) for its next scan. What a scan returns is valid until
    then, and so never goes to a user as it is.

    glibc may hand a freed array of a few hundred KB back to the OS, and every call then pays
    a page fault per 4 KB it touches. Whether it does depends on what else the process
    allocated: in some processes CTC's forward+backward at (50, 16, 20, 30) took 68 faults a
    call, 2.55-2.73 ms against 2.33-2.45 without them (2-core AMD EPYC KVM guest).
    """
    kept = getattr(_KEPT, "scan", None)
    if kept is not None and kept.label_emit.shape == (T, S, N):
        return kept
    _KEPT.scan = None  # the old arrays go before the new ones come
    arrays = _ScanArrays.new(T, S, N)
    if arrays.nbytes <= WORKSPACE_LIMIT:
        _KEPT.scan = arrays
    return arrays


def _host_scan(
    blank_emit: np.ndarray,
    label_emit: np.ndarray,
    labels: np.ndarray,
    lse: Callable[..., Any] = _host_lse,
    starts: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """alpha at t = -1..T-1 by NumPy: blank states ``(T + 1, W, N)``, label states ``(T + 1, W + 1, N)``.

    The states are the rows and the examples the columns (``blank_emit`` ``(T, N)``,
    ``label_emit`` ``(T, S, N)``, ``labels`` ``(S, N)``), so that ``A_{k-1}`` and ``A_k`` are
    contiguous blocks of one frame's label rows ``A_{-1}, A_0 .. A_{S-1}, A_S``, whose first
    and last stay ``NEG``: a step copies nothing and runs on contiguous memory. Each example
    starts at frame 0 in ``B_0``, or where ``starts`` (frames, blank states) say: before its
    start frame it is ``NEG`` everywhere, whatever its emissions there.

    A step is 17 NumPy calls of about half a microsecond each on small batches, so it counts
    them. ``lse(B_k, A_{k-1})``, once the blank states have read it, becomes what flows into
    ``A_k``: ``B_k`` is copied over it where the labels repeat (the jump is barred; at ``k = 0``
    it is ``B_0`` already, ``A_{-1}`` being ``NEG``). The arrays, and each frame's views of
    them, are :func:`_scan_arrays`' (slicing in the loop cost a tenth of the scan);
    ``label_emit`` may be that array already, written by the caller.
    """
    T, S, N = label_emit.shape
    arrays = _scan_arrays(T, S, N)
    blank, label, from_left = arrays.blank, arrays.label, arrays.from_left
    repeat = np.zeros((S, N), np.bool_)  # the jump A_{k-1} -> A_k is barred
    repeat[1:] = labels[1:] == labels[:-1]
    repeats = bool(repeat.any())
    blank.fill(NEG)
    label.fill(NEG)
    # The blank's emission spread over the blank states: an add of a broadcast (N,) row costs
    # a microsecond more a step than one of a contiguous (W, N) block.
    arrays.blank_emit[...] = blank_emit[:, None, :]
    if label_emit is not arrays.label_emit:
        arrays.label_emit[...] = label_emit
    frames, states = starts if starts is not None else (np.zeros(N, np.int64), np.zeros(N, np.int64))
    begins = {int(f): (states[frames == f], np.flatnonzero(frames == f)) for f in np.unique(frames)}
    lse_blank, lse_label = (lse(scratch) for scratch in arrays.scratch)

    def start(t: int) -> None:  # alpha just before the start frame: log 1 in the start state
        rows, cols = begins[t]
        blank[t][:, cols], label[t][:, cols], blank[t][rows, cols] = NEG, NEG, 0

    add, copyto, from_left_s = np.add, np.copyto, from_left[:S]
    with np.errstate(all="ignore"):  # a nan or inf example is invalid: its loss is nan anyway
        for t, (b, b_next, b_s, a_left, a, a_next, e_blank, e_label) in enumerate(arrays.steps):
            if t in begins:
                start(t)
            lse_blank(b, a_left, from_left)  # lse(B_k, A_{k-1})
            add(from_left, e_blank, b_next)
            if repeats:
                copyto(from_left_s, b_s, where=repeat)
            lse_label(a, from_left_s, a_next)
            add(a_next, e_label, a_next)
    if T in begins:  # examples of no frames
        start(T)
    return blank, label


def _host_layout(blank_emit: Array, label_emit: Array, labels: Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(T, N)``, ``(T, N, S)``, ``(N, S)`` as NumPy arrays with the examples last."""
    return np.asarray(blank_emit), np.asarray(label_emit).transpose(0, 2, 1), np.asarray(labels).T


def _host_alphas(blank_emit: Array, label_emit: Array, labels: Array, lse: Callable[..., Any] = _host_lse) -> tuple[Array, Array]:
    """:func:`_alphas` scanned by NumPy (:func:`_host_scan`), whose SIMD ``exp`` and ``log``
    cost a fraction of the scalar ``powf`` and ``logf`` in MLX's compiled CPU kernels, and
    whose operations dispatch in about a microsecond."""
    blank_emit, label_emit, labels = _host_layout(blank_emit, label_emit, labels)
    blank, label = _host_scan(blank_emit, np.ascontiguousarray(label_emit), labels, lse)
    return mx.array(blank).transpose(0, 2, 1), mx.array(label[:, 1:]).transpose(0, 2, 1)


def _host_log_likelihood(blank: np.ndarray, label: np.ndarray, L: np.ndarray, Sp: np.ndarray) -> np.ndarray:
    """:func:`_log_likelihood` of the first ``len(L)`` examples of a :func:`_host_scan`
    (``np.logaddexp``: one call where the scan's log-add-exp makes seven, on ``N`` numbers)."""
    n = np.arange(len(L))
    with np.errstate(all="ignore"):
        return np.logaddexp(blank[L, Sp, n], label[L, Sp, n])  # B_{S'}, A_{S'-1}


def _host_posterior_scan(be: np.ndarray, le: np.ndarray, lab: np.ndarray, L: np.ndarray, Sp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_posteriors` in NumPy's layout: ``log p`` ``(N,)``, blank ``(T, N)``, labels ``(T, S, N)``.

    beta comes from the problem flipped whole. It reads every example's frames ``T-1..0`` and
    label slots ``S-1..0``, so beta is alpha flipped back (``beta_t(B_k) = alpha'_{T-1-t}(B'_{S-k})``,
    ``beta_t(A_k) = alpha'_{T-1-t}(A'_{S-1-k})``): views, not gathers. Its example ``n``
    starts at frame ``T - L`` in the blank ``B'_{S-S'}`` after the padding slots, which lie
    behind it (``L``, ``S'`` its lengths). Both problems run as one scan of ``2 N`` examples.
    A posterior is ``exp(alpha + beta - e - log p)``, exactly 0 below ``POSTERIOR_FLOOR`` and
    on the frames past an input (whatever their emissions: nothing reads them).
    """
    T, S, N = le.shape
    W = S + 1
    starts = (np.concatenate([np.zeros(N, np.int64), T - L]), np.concatenate([np.zeros(N, np.int64), S - Sp]))
    both_emit = np.concatenate([le, le[::-1, ::-1]], axis=2, out=_scan_arrays(T, S, 2 * N).label_emit)
    blank, label = _host_scan(
        np.concatenate([be, be[::-1]], axis=1), both_emit, np.concatenate([lab, lab[::-1]], axis=1), _host_lse, starts
    )
    log_lik = _host_log_likelihood(blank, label, L, Sp)

    def posterior(alpha: np.ndarray, beta: np.ndarray, emit: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            x = np.add(alpha, beta)
            x -= emit + log_lik  # one pass: every pass is slow, its inner loop one frame's N examples
            # Exactly 0 at or below the floor, and no denormals on the way: NumPy's exp takes a
            # slow path wherever its result is one (ten times slower over [-200, 0]). Above the
            # floor, exp(floor) = 1.8e-35 less than the posterior (a mask costs two more passes).
            np.maximum(x, POSTERIOR_FLOOR, out=x)
            np.exp(x, out=x)
            return np.subtract(x, _EXP_FLOOR, out=x)

    post_blank = posterior(blank[1:, :, :N], blank[T:0:-1, ::-1, N:], be[:, None, :])  # (T, W, N)
    post_blank = np.ones(W, np.float32) @ post_blank  # the sum over the states, (T, N): BLAS beats .sum(axis=1) 7x
    post_label = posterior(label[1:, 1:W, :N], label[T:0:-1, S:0:-1, N:], le)  # (T, S, N)
    if L.min(initial=T) < T:
        dead = np.arange(T)[:, None] >= L[None, :]  # (T, N)
        post_blank[dead] = 0
        post_label.transpose(0, 2, 1)[dead] = 0
    return log_lik, post_blank, post_label


def _host_posteriors(blank_emit: Array, label_emit: Array, labels: Array, input_lengths: Array, target_lengths: Array) -> tuple[Array, Array, Array]:
    """:func:`_posteriors` by NumPy (:func:`_host_posterior_scan`)."""
    be, le, lab = _host_layout(blank_emit, label_emit, labels)
    L, Sp = np.asarray(input_lengths).astype(np.int64), np.asarray(target_lengths).astype(np.int64)
    log_lik, post_blank, post_label = _host_posterior_scan(be, np.ascontiguousarray(le), lab, L, Sp)
    return mx.array(log_lik), mx.array(post_blank), mx.array(post_label).transpose(0, 2, 1)


def _host_solve(inputs: Sequence[Array], zero_infinity: bool, gradients: bool) -> tuple[Array, Array]:
    """:func:`_solve` in NumPy from end to end, for the CPU outside traces: each MLX operation
    costs several microseconds to build and evaluate, NumPy's one.

    The emissions are gathered by fancy indexing straight into the scan's layout, and the
    gradient is the scatter-subtract of the posteriors by ``np.subtract.at`` over flat indices
    ``t N C + (n C + l)`` (26-33% faster than ``np.bincount``, which adds in float64 and
    needs a cast back, at each of ``bench_ctc``'s shapes).
    """
    log_probs, labels, il, tl, blank = (np.asarray(x) for x in inputs)
    T, N, C = log_probs.shape
    blank, lab = int(blank), np.ascontiguousarray(labels.T)  # (S, N)
    L, Sp = il.astype(np.int64), tl.astype(np.int64)
    log_probs = np.maximum(log_probs, NEG)  # -inf clamped once, before the gathers
    be = log_probs[:, :, blank]  # (T, N)
    le = log_probs[:, np.arange(N)[None, :], lab]  # (T, S, N)
    if not gradients:
        log_lik = _host_log_likelihood(*_host_scan(be, le, lab), L, Sp)
        return mx.array(_loss(log_lik, zero_infinity, np)), mx.broadcast_to(mx.array(0.0), (T, N, C))
    log_lik, post_blank, post_label = _host_posterior_scan(be, le, lab, L, Sp)
    flat = (np.arange(T) * (N * C))[:, None, None] + (np.arange(N) * C + lab)  # (T, S, N)
    grad = np.zeros((T, N, C), np.float32)  # minus the posteriors: subtracted in place
    np.subtract.at(grad.reshape(-1), flat.reshape(-1), post_label.reshape(-1))
    grad[:, :, blank] -= post_blank
    impossible = log_lik < IMPOSSIBLE
    if impossible.any():  # no posterior: PyTorch's gradient is nan on its frames, or 0 with zero_infinity
        live = np.arange(T)[:, None] < L[None, :]
        grad[live & impossible[None, :]] = 0.0 if zero_infinity else np.nan
    return mx.array(_loss(log_lik, zero_infinity, np)), mx.array(grad)


class Engine(NamedTuple):
    """One way to run the scan: alpha of a batch, and ``(log p, posteriors)`` (:func:`_posteriors`)."""

    alphas: Callable[[Array, Array, Array], tuple[Array, Array]]
    posteriors: Callable[[Array, Array, Array, Array, Array], tuple[Array, Array, Array]]


def _log_likelihood(alpha_blank: Array, alpha_label: Array, input_lengths: Array, target_lengths: Array) -> Array:
    """``log p`` of each target ``(N,)``: alpha at the last frame, over the two final states."""
    n, il, tl = mx.arange(input_lengths.shape[0]), input_lengths, target_lengths
    last_label = mx.where(tl > 0, alpha_label[il, n, mx.maximum(tl - 1, 0)], NEG)
    return _lse(alpha_blank[il, n, tl], last_label)


def _reversed(blank_emit: Array, label_emit: Array, labels: Array, input_lengths: Array, target_lengths: Array) -> tuple[Array, Array, Array]:
    """The problem read backwards: each example's frames ``0..input_length-1`` and its labels
    ``0..target_length-1`` in reverse order (what lies beyond is never read)."""
    T, N, S = label_emit.shape
    frame = mx.clip(input_lengths[None, :] - 1 - mx.arange(T)[:, None], 0, T - 1)  # (T, N)
    blank_emit = mx.take_along_axis(blank_emit, frame, axis=0)
    if S == 0:
        return blank_emit, label_emit, labels
    label = mx.clip(target_lengths[:, None] - 1 - mx.arange(S)[None, :], 0, S - 1)  # (N, S)
    label_emit = mx.take_along_axis(mx.take_along_axis(label_emit, frame[..., None], axis=0), label[None], axis=2)
    return blank_emit, label_emit, mx.take_along_axis(labels, label, axis=1)


def _betas(alpha_rev: tuple[Array, Array], input_lengths: Array, target_lengths: Array) -> tuple[Array, Array]:
    """beta (with the emission at t) at t = 0..T-1, ``(T, N, W)``, from alpha of the reversed
    problem: ``beta_t(B_k) = alpha'_{L-1-t}(B_{S'-k})`` and ``beta_t(A_k) = alpha'_{L-1-t}(A_{S'-1-k})``
    for input length ``L`` and target length ``S'``; NEG past either."""
    T = alpha_rev[0].shape[0] - 1
    W = alpha_rev[0].shape[2]
    il, tl = input_lengths[None, :, None], target_lengths[None, :, None]
    t, k = mx.arange(T)[:, None, None], mx.arange(W)[None, None, :]
    frame = mx.clip(il - t, 0, T)  # (T, N, 1), into the stack, which starts at t = -1
    live = t < il

    def read(alpha: Array, state: Array, valid: Array) -> Array:
        alpha = mx.take_along_axis(alpha, frame, axis=0)
        return mx.where(live & valid, mx.take_along_axis(alpha, mx.clip(state, 0, W - 1), axis=2), NEG)

    return read(alpha_rev[0], tl - k, k <= tl), read(alpha_rev[1], tl - 1 - k, k < tl)


def _posterior(log_post: Array) -> Array:
    """``exp(log_post)``, exactly 0 below -80 (no denormals, no slow ``powf`` path).

    ``powf`` alone, uncorrected (``fm.e_power``): its relative error, at most 3e-8 |log_post|,
    is 2e-6 at -80, where the posterior is 1e-35, and below float32's resolution near 1. These
    run eagerly, four operations over every state of every frame, not eight.
    """
    return mx.where(log_post > POSTERIOR_FLOOR, fm.e_power(mx.maximum(log_post, POSTERIOR_FLOOR)), 0.0)


def _emissions(log_probs: Array, labels: Array, blank: Array) -> tuple[Array, Array]:
    """Log-probabilities of the blank ``(T, N)`` and of each target label ``(T, N, S)``."""
    return mx.take(log_probs, blank, axis=2), mx.take_along_axis(log_probs, labels[None], axis=2)


def _posteriors(
    blank_emit: Array, label_emit: Array, labels: Array, il: Array, tl: Array, step: Callable[..., tuple[Array, Array]]
) -> tuple[Array, Array, Array]:
    """``log p`` ``(N,)``, the blank's posterior summed over its states ``(T, N)``, and each
    label's ``(T, N, S)``: alpha for the batch and its reversal in one scan of ``2 N``
    examples, as beta is alpha of the reversed problem."""
    N, S = labels.shape
    rev_blank, rev_label, rev_labels = _reversed(blank_emit, label_emit, labels, il, tl)
    alpha_b, alpha_l = _alphas(
        mx.concatenate([blank_emit, rev_blank], axis=1),
        mx.concatenate([label_emit, rev_label], axis=1),
        mx.concatenate([labels, rev_labels], axis=0),
        step,
    )
    alpha = alpha_b[:, :N], alpha_l[:, :N]
    log_lik = _log_likelihood(*alpha, il, tl)
    beta = _betas((alpha_b[:, N:], alpha_l[:, N:]), il, tl)
    ll = log_lik[None, :, None]
    # Both alpha and beta include the emission at t: remove it once.
    post_blank = _posterior(alpha[0][1:] + beta[0] - (blank_emit[..., None] + ll))
    post_label = _posterior(alpha[1][1:, :, :S] + beta[1][:, :, :S] - label_emit - ll)
    return log_lik, mx.sum(post_blank, axis=2), post_label


_COMPILED = Engine(functools.partial(_alphas, step=_alpha_compiled), functools.partial(_posteriors, step=_alpha_compiled))
_INLINE = Engine(functools.partial(_alphas, step=_alpha_inline), functools.partial(_posteriors, step=_alpha_inline))
_HOST = Engine(_host_alphas, _host_posteriors)


def _eager_engine() -> Engine:
    """The scan outside traces: NumPy's on the CPU, compiled MLX steps on a GPU."""
    return _HOST if mx.default_device().type == mx.DeviceType.cpu else _COMPILED


def _solve(inputs: Sequence[Array], zero_infinity: bool, engine: Engine, gradients: bool) -> tuple[Array, Array]:
    """(loss ``(N,)``, d loss / d log_probs ``(T, N, C)``) of ``(log_probs, labels, lengths.., blank)``.

    Without ``gradients`` only alpha is computed, and the gradient is zeros that take no memory.
    """
    if engine is _HOST:
        return _host_solve(inputs, zero_infinity, gradients)
    log_probs, labels, il, tl, blank = inputs
    T, N, C = log_probs.shape
    blank_emit, label_emit = (mx.maximum(e, NEG) for e in _emissions(log_probs, labels, blank))
    if not gradients:
        alpha = engine.alphas(blank_emit, label_emit, labels)
        loss = _loss(_log_likelihood(*alpha, il, tl), zero_infinity)
        return loss, mx.broadcast_to(mx.array(0.0), (T, N, C))
    log_lik, post_blank, post_label = engine.posteriors(blank_emit, label_emit, labels, il, tl)
    # Sum the posteriors of each class: the vjp of the gathering (a scatter-add along C).
    _, (grad,) = mx.vjp(lambda lp: _emissions(lp, labels, blank), [log_probs], [-post_blank, -post_label])
    # An impossible target has no posterior: PyTorch's gradient is nan on its frames, or 0
    # with zero_infinity.
    impossible = log_lik < IMPOSSIBLE
    live = mx.arange(T)[:, None] < il[None, :]
    lost = mx.where(live, 0.0 if zero_infinity else mx.nan, 0.0)[..., None]
    return _loss(log_lik, zero_infinity), mx.where(impossible[None, :, None], lost, grad)


def _loss(log_lik: Any, zero_infinity: bool, xp: Any = mx) -> Any:
    """``-log p``; an impossible target (no alignment fits) costs inf, or 0 with zero_infinity
    (by MLX, or by NumPy: ``xp``)."""
    return xp.where(log_lik < IMPOSSIBLE, 0.0 if zero_infinity else math.inf, -log_lik)


def _run(zero_infinity: bool, inputs: Sequence[Array], gradients: bool = False) -> tuple[Array, Array]:
    """The core's forward: gradients when autodiff may ask for them (or when told to)."""
    mode = transformation(inputs)
    if mode == "trace":
        return _solve(inputs, zero_infinity, _INLINE, gradients=True)
    if mode == "grad":
        engine = _eager_engine()
        if engine is not _HOST:  # plain copies, no longer tracers: MLX's compiled steps stay compiled
            inputs = [mx.array(np.array(x)) for x in inputs]
        return _solve(inputs, zero_infinity, engine, gradients=True)
    return _solve(inputs, zero_infinity, _eager_engine(), gradients)


# --- the custom function ------------------------------------------------------------------


def _vjp(primals: Sequence[Array], cotangents: Sequence[Array], outputs: Sequence[Array]) -> tuple[Array, ...]:
    """The gradient the forward computed, scaled by the loss's cotangent. The gradient output's
    own cotangent is 0 for every first derivative; a second one stops at the guard first."""
    g, grad = cotangents[0], outputs[1]
    return (g[None, :, None] * _first_order_only(grad), *(mx.zeros_like(p) for p in primals[1:]))


def _not_twice_differentiable(*_: Any) -> Any:
    raise ValueError(
        "ctc_loss is not twice differentiable: its gradient is computed by a custom scan "
        "(PyTorch's CTC backward is not differentiable either)"
    )


# The identity on the gradient, whose vjp raises: a second derivative (``mx.grad`` of a function
# of the gradient) has to go through it, a first never does, and nothing is read or evaluated,
# so it raises inside ``mx.compile`` too, before any wrong Hessian could be computed.
_first_order_only = mx.custom_function(lambda grad: grad)
_first_order_only.vjp(_not_twice_differentiable)


def _jvp(zero_infinity: bool, primals: Sequence[Array], tangents: Sequence[Array | None]) -> tuple[Array, Array]:
    _, grad = _run(zero_infinity, primals, gradients=True)
    tangent = tangents[0]
    if tangent is None:
        return mx.zeros(grad.shape[1]), mx.zeros_like(grad)
    # The gradient output's tangent (a Hessian-vector product) is not known: nan, where asked.
    unknown = mx.where(mx.any(tangent != 0), mx.nan, 0.0)
    return mx.sum(grad * tangent, axis=(0, 2)), mx.broadcast_to(unknown, grad.shape)


# The batch axis of each input and output of the core (log_probs are time-major).
_IN_BATCH_AXES = (1, 0, 0, 0)
_OUT_BATCH_AXES = (0, 1)


def _vmap(zero_infinity: bool, inputs: Sequence[Array], axes: Sequence[int | None]) -> tuple[tuple[Array, ...], tuple[int, ...]]:
    """Fold the vmapped axis into the batch: ``M`` batches of ``N`` are one batch of ``M * N``."""
    if axes[4] is not None:
        raise ValueError("ctc_loss: the blank must be the same for every example of a vmapped batch")
    (m,) = {x.shape[a] for x, a in zip(inputs, axes) if a is not None}
    folded = []
    for x, a, b in zip(inputs[:4], axes, _IN_BATCH_AXES):
        x = mx.moveaxis(x, a, b) if a is not None else mx.broadcast_to(mx.expand_dims(x, b), x.shape[:b] + (m,) + x.shape[b:])
        folded.append(x.reshape(x.shape[:b] + (-1,) + x.shape[b + 2 :]))
    folded.append(inputs[4])
    if transformation(folded) == "eager":
        # No autodiff around us, but a vmapped mx.grad may read the gradient: build it
        # apart from the loss, so that it is only computed if it is used.
        loss = _solve(folded, zero_infinity, _eager_engine(), gradients=False)[0]
        outputs = (loss, _solve(folded, zero_infinity, _eager_engine(), gradients=True)[1])
    else:
        outputs = _CORE[zero_infinity](*folded)
    unfolded = tuple(
        y.reshape(y.shape[:b] + (m, -1) + y.shape[b + 1 :]) for y, b in zip(outputs, _OUT_BATCH_AXES)
    )
    return unfolded, _OUT_BATCH_AXES


def _make_core(zero_infinity: bool) -> Any:
    core = mx.custom_function(lambda *inputs: _run(zero_infinity, inputs))
    core.vjp(_vjp)
    core.jvp(functools.partial(_jvp, zero_infinity))
    core.vmap(functools.partial(_vmap, zero_infinity))
    return core


# (log_probs (T, N, C) float32, labels (N, S), input_lengths (N,), target_lengths (N,), blank ())
# -> (loss (N,), d loss / d log_probs (T, N, C)), one per zero_infinity.
_CORE = {flag: _make_core(flag) for flag in (False, True)}


def _prepared(
    xp: Any, log_probs: Any, targets: Any, il: Any, tl: Any, blank: Any, checked: bool = False
) -> tuple[Any, Any, Any, Any, Any]:
    """``(labels, il, tl, blank, valid)`` for the core, by NumPy or MLX (``xp``), int32 inputs.

    ``labels`` ``(N, max(S, 1))``: the targets with every unused slot the blank (one unused
    label keeps the state arrays non-empty when every target is), each index clamped into
    range. ``valid`` ``(N,)``: the example's lengths and used labels are in range and not the
    blank, and no frame of its input holds a nan or +inf (PyTorch's loss is nan there, read
    or not, and so is its gradient). ``checked``: the caller has raised on every length and
    used label out of range and on the blank as a label, so nothing needs clamping and only
    the nan and +inf rule is tested (20 NumPy calls fewer).
    """
    T, N, C = log_probs.shape
    S = targets.shape[1]
    used = xp.arange(S)[None, :] < tl[:, None]
    if checked:
        in_range, il_in, tl_in, blank_in, valid = targets, il, tl, blank, xp.ones(N, dtype=xp.bool_)
    else:

        def clip(x: Any, high: int) -> Any:  # NumPy's clip costs several times two ufuncs
            return xp.minimum(xp.maximum(x, 0), high)

        # Each index clamped into range; it was in range where clamping left it as it was.
        in_range, il_in, tl_in, blank_in = clip(targets, C - 1), clip(il, T), clip(tl, S), clip(blank, C - 1)
        label_ok = xp.logical_not(used) | ((in_range == targets) & (targets != blank))
        valid = (il_in == il) & (tl_in == tl) & xp.all(label_ok, axis=1) & (blank_in == blank)
    # NumPy's max propagates a nan: one reduction clears the whole input (2 µs at
    # (50, 16, 20), against 28 for the per-frame test).
    if xp is not np or not np.max(log_probs, initial=-math.inf) < math.inf:
        broken = xp.any(xp.logical_not(log_probs < math.inf), axis=2)  # (T, N): a nan or +inf
        live = xp.arange(T)[:, None] < il[None, :]
        valid = valid & xp.logical_not(xp.any(broken & live, axis=0))
    if S == 0:
        in_range, used = xp.zeros((N, 1), dtype=xp.int32), xp.zeros((N, 1), dtype=xp.bool_)
    return xp.where(used, in_range, blank_in), il_in, tl_in, blank_in, valid


def ctc_batch(
    log_probs: Array,
    targets: Array,
    input_lengths: Array,
    target_lengths: Array,
    blank: int | Array = 0,
    zero_infinity: bool = False,
    checked: bool = False,
) -> Array:
    """CTC loss ``-log p(target | log_probs)`` of each example of a batch, ``(N,)``.

    ``log_probs`` ``(T, N, C)``, ``targets`` ``(N, S)`` (entries past a target length are
    ignored), ``input_lengths`` and ``target_lengths`` ``(N,)``, ``blank`` an index in
    ``[0, C)``. Nothing is checked here (see :func:`lossfn.functional.ctc_loss`); by the
    in-graph validation rule an example whose input length is outside ``[0, T]``, whose target
    length is outside ``[0, S]``, or whose used labels are outside ``[0, C)`` or equal the blank,
    costs ``nan``, and every index is clamped before it is read (:func:`_prepared`). Where the
    inputs can be read (outside ``mx.compile`` and ``mx.vmap``) NumPy prepares them: a handful
    of microseconds, against several for each of some 25 MLX operations. ``checked``: the
    caller has raised on every invalid length and label (see :func:`_prepared`).
    """
    dtype, log_probs = log_probs.dtype, log_probs.astype(mx.float32)
    blank = mx.array(blank, dtype=mx.int32) if not isinstance(blank, mx.array) else blank.astype(mx.int32)
    inputs = [log_probs, *(x.astype(mx.int32) for x in (targets, input_lengths, target_lengths)), blank]
    read = C.readable(*inputs)
    if read is None:
        *prepared, valid = _prepared(mx, *inputs)
    else:
        *prepared, valid = _prepared(np, *read, checked=checked)
        prepared = [mx.array(x) for x in prepared]
    loss = _CORE[bool(zero_infinity)](log_probs, *prepared)[0]
    if read is None or not valid.all():
        loss = nan_unless(mx.array(valid), loss)
    return loss.astype(dtype)


# --- the forward probabilities and the best path (optax's; Viterbi) ---------------------------


def _frozen(alpha: Array, input_lengths: Array) -> Array:
    """``alpha`` ``(T, N, W)`` with every frame at or after an example's length holding its last frame's."""
    T = alpha.shape[0]
    frame = mx.minimum(mx.arange(T)[:, None], mx.maximum(input_lengths, 1)[None, :] - 1)  # (T, N)
    return mx.take_along_axis(alpha, frame[..., None], axis=0)


def forward_probabilities(log_probs: Array, labels: Array, input_lengths: Array, target_lengths: Array, blank: Array) -> tuple[Array, Array, Array]:
    """``(loss (N,), log alpha of the blank states (T, N, S + 1), of the label states (T, N, S))``.

    optax's ``ctc_loss_with_forward_probs`` layout: alpha after each frame, frames past an
    example's length holding its last one, and at the last frame the blank states absorb the
    label before them (``B_k <- lse(B_k, A_{k-1})``), whose entry at the target length is then
    ``log p``. Impossible states are ``NEG`` (optax: sums of ``log_epsilon = -1e5``); an
    impossible target's loss is ``inf``, as :func:`ctc_loss`'s.
    """
    labels = labels.astype(mx.int32)
    blank_emit, label_emit = _emissions(mx.maximum(log_probs, NEG), labels, blank)
    alpha_blank, alpha_label = _alphas(blank_emit, label_emit, labels, _alpha_compiled)
    alpha_blank = _frozen(alpha_blank[1:], input_lengths)
    alpha_label = _frozen(alpha_label[1:, :, :-1], input_lengths)
    last = mx.concatenate([alpha_blank[-1, :, :1], _lse(alpha_blank[-1, :, 1:], alpha_label[-1])], axis=-1)
    alpha_blank = mx.concatenate([alpha_blank[:-1], last[None]], axis=0)
    log_likelihood = mx.take_along_axis(last, target_lengths[:, None].astype(mx.int32), axis=1)[:, 0]
    return mx.where(log_likelihood > IMPOSSIBLE, -log_likelihood, mx.inf), alpha_blank, alpha_label


def best_path(log_probs: Array, labels: Array, input_lengths: Array, target_lengths: Array, blank: Array) -> Array:
    """The most probable alignment (Viterbi) of each example: its state per frame ``(N, T)``, ``-1`` past its length.

    States are numbered in the extended sequence: ``2k`` the blank after ``k`` labels, ``2k + 1``
    the ``k``-th label (0-based). The recursion is alpha's with ``max`` for ``lse``; the path is
    read back from the last frame, each frame's predecessor the best of those allowed. Ties go
    to the lowest state (the blank before the label, then the label itself). An impossible
    target gives ``-1`` everywhere.
    """
    labels = labels.astype(mx.int32)
    T, N = log_probs.shape[0], log_probs.shape[1]
    blank_emit, label_emit = _emissions(mx.maximum(log_probs, NEG), labels, blank)
    alpha_blank, alpha_label = _host_alphas(blank_emit, label_emit, labels, _host_max)
    blank_scores, label_scores = np.asarray(alpha_blank[1:]), np.asarray(alpha_label[1:])  # (T, N, S + 1)
    skips = np.asarray(labels[:, 1:] != labels[:, :-1])
    lengths, tls = np.asarray(input_lengths), np.asarray(target_lengths)
    states = np.full((N, T), -1, np.int32)
    for n in range(N):
        il, tl = int(lengths[n]), int(tls[n])
        if il == 0:
            continue
        scores = np.stack([blank_scores[:, n, : tl + 1], np.concatenate([label_scores[:, n, :tl], np.full((T, 1), NEG)], axis=1)], axis=-1)
        score = scores.reshape(T, -1)[:, : 2 * tl + 1]  # (T, 2 tl + 1): state 2k blank, 2k + 1 label
        end = max([2 * tl - 1, 2 * tl] if tl else [0], key=lambda a: (score[il - 1, a], -a))
        if score[il - 1, end] <= IMPOSSIBLE:
            continue
        states[n, il - 1] = end
        for t in range(il - 1, 0, -1):
            s = states[n, t]
            allowed = [s - 1, s] if s % 2 == 0 else [s - 1, s] + ([s - 2] if s >= 3 and skips[n, (s - 1) // 2 - 1] else [])
            allowed = [a for a in allowed if a >= 0]
            states[n, t - 1] = max(allowed, key=lambda a: (score[t - 1, a], -a))
    return mx.array(states)
