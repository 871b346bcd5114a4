"""Memory for long sequences: what a fused neuron keeps for backward, and spikes at one bit.

Two independent savings, both exact (identical spikes and gradients):

- **What the neuron keeps** (``memory=`` of :func:`~spikeweave.functional.fused.neuron_multistep`
  and of every neuron module): ``"save"`` keeps the pre-reset potentials ``h [T, B, ...]``
  (one value per element and step in the compute dtype); ``"recompute"`` keeps only a
  reference to the input ``x`` (and ``v0``) and runs the same kernel forward again in
  backward to rebuild ``h`` (bit for bit: the same operations on the same values). Keeping
  ``x`` costs nothing new where ``x`` is held anyway, and ``x``'s own storage where it is
  not, so recompute pays where that storage is smaller than ``h``: an input broadcast over
  time (``x0.expand(T, ...)``, stride 0), i.e. ``T × neurons × batch`` values of ``h``
  against ``neurons × batch`` of ``x``. ``"auto"`` (default) chooses it exactly there
  (:func:`choose`).
- **Spikes at one bit** (:func:`pack_spikes`): inside ``with pack_spikes():`` every tensor a
  later operation saves for its backward that is a fused neuron's spike output (a
  ``Linear``/``Conv`` after the neuron saves its input) is stored as 1 bit per spike instead
  of 32 (float32), and unpacked when backward reads it. Spike outputs are recognised by their
  storage (the neuron marks them, :func:`mark_spikes`), never by scanning values; one
  modified in place since is left alone.

On the CPU the C kernel and on CUDA the Triton kernel do both passes; the PyTorch fused loop
recomputes the same way.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch

from ..errors import ConfigError

__all__ = [
    "MEMORY_MODES",
    "PACK_MIN_NUMEL",
    "choose",
    "is_marked_spikes",
    "mark_spikes",
    "pack_bits",
    "pack_saved",
    "pack_spikes",
    "unpack_bits",
    "unpack_saved",
]

MEMORY_MODES = ("auto", "save", "recompute")
PACK_MIN_NUMEL = 1 << 12
"""Below this many spikes a tensor is kept as it is (the packing costs more than it saves)."""


def check_mode(memory: object, who: str = "memory") -> str:
    """``memory`` if it is one of :data:`MEMORY_MODES`, else a ``ConfigError``."""
    if not isinstance(memory, str) or memory not in MEMORY_MODES:
        raise ConfigError(f"{who} must be one of {', '.join(MEMORY_MODES)}, got {memory!r}")
    return memory


def choose(x: torch.Tensor, memory: str) -> str:
    """``"save"`` or ``"recompute"`` for input ``x [T, B, ...]``.

    ``"auto"`` recomputes where keeping ``x`` takes less than half the bytes of ``h``
    (``T·B·N`` values in ``x``'s dtype or wider): ``x`` broadcast over time, so its
    storage holds ``B·N`` values, not ``T·B·N``.
    """
    if memory != "auto":
        return memory
    h_bytes = x.numel() * max(x.element_size(), 4)
    x_bytes = x.untyped_storage().nbytes()
    return "recompute" if 2 * x_bytes < h_bytes else "save"


# ------------------------------------------------------------------------ spikes at 1 bit

_SHIFTS: dict[torch.device, torch.Tensor] = {}


def _shifts(device: torch.device) -> torch.Tensor:
    s = _SHIFTS.get(device)
    if s is None:
        s = _SHIFTS[device] = torch.arange(8, dtype=torch.uint8, device=device)
    return s


def pack_bits(s: torch.Tensor) -> torch.Tensor:
    """Nonzero entries of ``s`` as bits: ``uint8 [ceil(numel / 8)]``, bit ``i % 8`` of byte
    ``i // 8`` for element ``i`` in row-major order."""
    flat = s.reshape(-1) != 0
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    b = flat.view(-1, 8).to(torch.uint8) << _shifts(s.device)
    return b.sum(1, dtype=torch.uint8)  # distinct bits: the sum is their OR


def unpack_bits(
    bits: torch.Tensor, shape: torch.Size, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The 0/1 tensor of ``shape`` and ``dtype`` that :func:`pack_bits` packed."""
    n = 1
    for d in shape:
        n *= d
    flat = (bits.unsqueeze(1) >> _shifts(bits.device)) & 1
    return flat.view(-1)[:n].to(dtype).view(shape)


# spike outputs by storage address: (weak reference to the tensor, its version when marked)
_marked: dict[int, tuple[weakref.ref, int]] = {}


def mark_spikes(s: torch.Tensor) -> None:
    """Remember ``s`` (0/1 values, a fused neuron's output) as spikes for :func:`pack_spikes`."""
    if s.numel() < PACK_MIN_NUMEL or not s.is_floating_point() or not s.is_contiguous():
        return
    ptr = s.untyped_storage().data_ptr()

    def forget(ref: weakref.ref, ptr: int = ptr) -> None:
        entry = _marked.get(ptr)
        if entry is not None and entry[0] is ref:
            del _marked[ptr]

    _marked[ptr] = (weakref.ref(s, forget), s._version)


def is_marked_spikes(t: torch.Tensor) -> bool:
    """Whether ``t`` is (a view of) a marked spike output not modified since."""
    if not t.is_floating_point() or t.numel() < PACK_MIN_NUMEL:
        return False
    entry = _marked.get(t.untyped_storage().data_ptr())
    if entry is None:
        return False
    s = entry[0]()
    # views share their base's version counter: any in-place write since marking shows
    return s is not None and t._version == entry[1] and s.dtype == t.dtype


class _Packed(NamedTuple):
    bits: torch.Tensor
    shape: torch.Size
    dtype: torch.dtype


def pack_saved(t: torch.Tensor):
    """:func:`pack_spikes`' pack hook: a marked spike tensor as bits, anything else as is."""
    if t.is_contiguous() and is_marked_spikes(t):
        return _Packed(pack_bits(t), t.shape, t.dtype)
    return t


def unpack_saved(p):
    """:func:`pack_spikes`' unpack hook (the inverse of :func:`pack_saved`)."""
    return unpack_bits(p.bits, p.shape, p.dtype) if isinstance(p, _Packed) else p


@contextmanager
def pack_spikes() -> Iterator[None]:
    """Within it, spike outputs that later operations save for backward are kept at 1 bit.

    Wrap the forward pass (the backward may run outside)::

        with spikeweave.functional.pack_spikes():
            loss = loss_fn(net(x), y)
        loss.backward()

    Gradients are identical (the unpacked values are the same 0/1). A graph recorded inside
    cannot be differentiated twice through those saved spikes (``create_graph``).
    """
    with torch.autograd.graph.saved_tensors_hooks(pack_saved, unpack_saved):
        yield
