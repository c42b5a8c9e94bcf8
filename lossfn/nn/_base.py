"""The base classes of every loss module: ``_Loss`` and ``_WeightedLoss``.

A class stores its hyper-parameters; calling it is one call into ``lossfn.functional``.
Class weights are *buffers*: saved with the module, never trainable, whatever
``freeze``/``unfreeze`` is later applied to a model that holds the loss.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx import nn

from .. import _checks as C


class _BufferNames(set):
    """A module's frozen-key set that always contains its buffers, even after ``unfreeze``."""

    def __init__(self, buffers: set[str]) -> None:
        super().__init__()
        self.buffers = buffers

    def __contains__(self, key: object) -> bool:
        return key in self.buffers or super().__contains__(key)


class _Loss(nn.Module):
    """Base of every loss: holds ``reduction`` ('none' | 'mean' | 'sum')."""

    reductions: tuple[str, ...] = ("none", "mean", "sum")

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean") -> None:
        super().__init__()
        self._no_grad = _BufferNames(set())
        self.reduction = C.reduction_of(size_average, reduce, reduction, self.reductions)

    def register_buffer(self, name: str, value: Any) -> None:
        """Store ``value`` (an array, or None) as a non-trainable member ``name``."""
        self._no_grad.buffers.add(name)
        setattr(self, name, None if value is None else C.as_array(value, name))

    def _hyper(self) -> dict[str, Any]:
        """The hyper-parameters shown by ``repr``, in the order of the constructor."""
        return {"reduction": self.reduction}

    def _extra_repr(self) -> str:
        parts = [f"{k}={v!r}" if not isinstance(v, mx.array) else f"{k}=array{tuple(v.shape)}" for k, v in self._hyper().items()]
        return ", ".join(parts)


class _WeightedLoss(_Loss):
    """A loss with a per-class (or per-element) ``weight`` buffer."""

    def __init__(
        self,
        weight: mx.array | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)

    def _hyper(self) -> dict[str, Any]:
        weight = {} if self.weight is None else {"weight": self.weight}
        return {**weight, **super()._hyper()}
