"""Sequence losses of one example: CTC, the log-likelihood of a target over all its alignments; its forward probabilities and best alignment."""

from __future__ import annotations

import mlx.core as mx

from ._ctc_scan import best_path, ctc_batch, forward_probabilities
from ._example import per_example


def _ctc_batch(
    log_probs: mx.array,
    target: mx.array,
    input_length: mx.array,
    target_length: mx.array,
    blank: int | mx.array = 0,
    zero_infinity: bool = False,
) -> mx.array:
    """The batch rule: log-probabilities ``(N, T, C)``, targets ``(N, S)``, lengths ``(N,)`` -> ``(N,)``."""
    return ctc_batch(mx.moveaxis(log_probs, 0, 1), target, input_length, target_length, blank, zero_infinity)


@per_example(log_probs="(T, C)", target="(S,)", input_length="()", target_length="()", batch_rule=_ctc_batch)
def ctc_loss(
    log_probs: mx.array,
    target: mx.array,
    input_length: int | mx.array,
    target_length: int | mx.array,
    blank: int | mx.array = 0,
    zero_infinity: bool = False,
) -> mx.array:
    r"""Connectionist Temporal Classification loss of one example, a scalar.

    .. math:: \ell = -\log \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_{t=0}^{L-1} p_t(\pi_t)

    over the alignments :math:`\pi` of length :math:`L` (``input_length``) that collapse to the
    target :math:`y` = ``target[:target_length]`` once repeats are merged and blanks removed
    (so repeated labels need a blank between them). ``log_probs`` ``(T, C)`` holds
    log-probabilities (e.g. a log-softmax) with ``L <= T`` frames used; ``target`` ``(S,)``
    holds class indices other than ``blank``, with ``target_length <= S`` of them used.
    A target that no alignment fits (too long for its input) costs ``inf``, or 0 with
    ``zero_infinity`` (and then its gradient is 0, not nan).

    The gradient is the true derivative of :math:`\ell` with respect to ``log_probs``: minus the
    posterior probability of each label at each frame. PyTorch's ``ctc_loss`` returns that plus
    ``exp(log_probs)`` (the gradient with respect to logits whose log-softmax is ``log_probs``);
    the two agree once taken through ``log_softmax``.

    PyTorch's 'mean' divides each loss by its target length before averaging:
    ``reduce(rescaled(ctc_loss), 'mean')(log_probs, target, il, tl, 1 / maximum(tl, 1))``.

    The recursion is a scan over time with its own backward pass, batched over examples
    (NumPy's on the CPU, compiled MLX steps elsewhere): under ``mx.vmap``
    (``transforms.reduce``) the whole batch runs as one scan.
    Not twice differentiable. Under ``mx.compile`` the scan is unrolled, which compiles slowly
    for long inputs: compile around it, not through it (``transforms.value_and_grad_around``).
    """
    return _ctc_batch(log_probs[None], target[None], input_length[None], target_length[None], blank, zero_infinity)[0]


def _time_major(log_probs: mx.array, target: mx.array, input_length: mx.array, target_length: mx.array) -> tuple[mx.array, ...]:
    return mx.moveaxis(log_probs, 0, 1), target.astype(mx.int32), input_length.astype(mx.int32), target_length.astype(mx.int32)


def _forward_probabilities_batch(log_probs: mx.array, target: mx.array, input_length: mx.array, target_length: mx.array, blank: int = 0) -> tuple:
    """The batch rule: ``(N, T, C)`` ... -> loss ``(N,)``, alphas ``(N, T, S + 1)`` and ``(N, T, S)``."""
    loss, alpha_blank, alpha_label = forward_probabilities(*_time_major(log_probs, target, input_length, target_length), mx.array(blank))
    return loss, mx.moveaxis(alpha_blank, 0, 1), mx.moveaxis(alpha_label, 0, 1)


@per_example(log_probs="(T, C)", target="(S,)", input_length="()", target_length="()", batch_rule=_forward_probabilities_batch)
def ctc_forward_probabilities(log_probs: mx.array, target: mx.array, input_length: int | mx.array, target_length: int | mx.array, blank: int = 0) -> tuple:
    r"""CTC's forward probabilities of one example (optax's ``ctc_loss_with_forward_probs``): ``(loss, log_alpha_blank, log_alpha_label)``.

    ``log_alpha_blank`` ``(T, S + 1)``: at frame :math:`t`, the log-probability of the paths of
    frames :math:`0..t` that have emitted :math:`k` labels and are in the blank after them;
    ``log_alpha_label`` ``(T, S)``: those in the :math:`k`-th label. As optax's: frames past
    ``input_length`` repeat the last, and at the last frame the blank after :math:`k` labels
    absorbs the :math:`k`-th label, so ``-log_alpha_blank[-1, target_length]`` is the loss
    (:func:`ctc_loss`'s). Unreachable states are about ``-1e30`` (optax's are sums of
    ``-1e5``); entries past ``target_length`` are not meaningful. The batch runs as one
    compiled scan (``transforms.batched``); autodiff goes through it, slowly (:func:`ctc_loss`
    has the fast gradient).
    """
    out = _forward_probabilities_batch(log_probs[None], target[None], mx.array(input_length)[None], mx.array(target_length)[None], blank)
    return tuple(x[0] for x in out)


def _forced_alignment_batch(log_probs: mx.array, target: mx.array, input_length: mx.array, target_length: mx.array, blank: int = 0) -> tuple:
    """The batch rule: ``(N, T, C)`` ... -> states, frame labels ``(N, T)``, label starts and ends ``(N, S)``."""
    log_probs, target, input_length, target_length = _time_major(log_probs, target, input_length, target_length)
    states = best_path(log_probs, target, input_length, target_length, mx.array(blank))
    is_label = (states % 2 == 1) & (states >= 0)
    k = mx.maximum(states - 1, 0) // 2
    frame_labels = mx.where(is_label, mx.take_along_axis(target, mx.minimum(k, target.shape[1] - 1), axis=1), mx.where(states >= 0, blank, -1))
    frames = mx.arange(states.shape[1])
    at = is_label[:, None, :] & (k[:, None, :] == mx.arange(target.shape[1])[None, :, None])  # (N, S, T)
    starts = mx.where(mx.any(at, axis=-1), mx.min(mx.where(at, frames, states.shape[1]), axis=-1), -1)
    ends = mx.where(mx.any(at, axis=-1), mx.max(mx.where(at, frames, -1), axis=-1) + 1, -1)
    return states, frame_labels, starts, ends


@per_example(log_probs="(T, C)", target="(S,)", input_length="()", target_length="()", batch_rule=_forced_alignment_batch)
def ctc_forced_alignment(log_probs: mx.array, target: mx.array, input_length: int | mx.array, target_length: int | mx.array, blank: int = 0) -> tuple:
    r"""The most probable CTC alignment (Viterbi) of one example: ``(states, frame_labels, starts, ends)``.

    ``states`` ``(T,)``: the state of each frame in the blank-extended target (``2k`` the blank
    after ``k`` labels, ``2k + 1`` the ``k``-th label), ``-1`` past ``input_length``;
    ``frame_labels`` ``(T,)``: the class of each frame (``blank`` or a label); ``starts``,
    ``ends`` ``(S,)``: the frames ``[start, end)`` of each label's segment, ``-1`` past
    ``target_length``. All ``-1`` for a target no alignment fits. The scores are a compiled
    scan (alpha's, with ``max`` for log-add-exp); the path is read back on the host, so this
    evaluates (not inside ``mx.compile``). Ties go to the lowest state.
    """
    out = _forced_alignment_batch(log_probs[None], target[None], mx.array(input_length)[None], mx.array(target_length)[None], blank)
    return tuple(x[0] for x in out)
