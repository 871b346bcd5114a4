"""NIR export and import: spikeweave models to and from the Neuromorphic Intermediate
Representation (the ``nir`` package), with explicit units.

>>> graph = to_nir(model, dt=1e-3, input_shape=(1, 8, 8))     # dt: seconds per step
>>> net = from_nir(graph)                                       # [T, B, ...] -> [T, B, ...]
>>> save_nir(run, "model.nir", dt=1e-3); net = load_nir("model.nir")

Units. spikeweave's ``tau`` is in steps; NIR's ``tau`` is in seconds and its LIF is the ODE
``tau·dv/dt = (v_leak − v) + R·I``. Forward Euler at step ``dt`` gives
``v[t] = v[t−1] + (dt/tau)·(v_leak − v[t−1]) + (dt/tau)·R·I[t]``, which is spikeweave's
discrete charge exactly when

- ``tau_nir = tau_steps · dt`` (seconds) and ``v_leak = v_reset``;
- ``R = 1`` for ``LIF(decay_input=True)`` (input scaled by ``1/tau`` with the leak) and
  ``R = tau_steps`` for ``LIF(decay_input=False)`` (input added unscaled);
- IF (``dv/dt = R·I``): ``R = 1/dt``.

Thresholds and ``v_reset`` are in the membrane's units on both sides. Hard reset is NIR's reset
(``v ← v_reset``); soft reset (``v ← v − θ``) has no NIR node and is refused. NIR writes the spike
condition as ``v > θ``; spikeweave fires at ``v ≥ θ`` (equality has probability zero for real
inputs, but matters for hand-made integer examples). NIR has no ``dt``: the exporter records it
in the graph's metadata (``dt``, seconds) and each neuron's exact ``tau_steps``, so a
spikeweave → NIR → spikeweave round trip is bit-exact; a foreign file needs ``dt=``.
The node-by-node support table is in docs/nir.md.
"""

from __future__ import annotations

import io
import math
import numbers
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, DataError, SpikeweaveError
from ..layers import TimeFolded
from ..models.readout import PopulationReadout
from ..neurons import IF, LIF, SpikingNeuron

__all__ = [
    "to_nir",
    "from_nir",
    "save_nir",
    "load_nir",
    "read_graph",
    "SumPool2d",
    "InputScale",
    "FORMAT_NOTE",
    "PEERS",
    "check_peer",
]

FORMAT_NOTE = "spikeweave"
"""``metadata["generator"]`` of graphs this module writes."""

# A stored tau_steps is trusted only if it still agrees with the node's tau in seconds: a file
# edited by another tool then falls back to tau / dt instead of a stale value.
_REL_TOL = 1e-9


def _nir() -> Any:
    """The ``nir`` package, or a one-line ConfigError saying how to install it."""
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is a declared dependency
        raise ConfigError("NIR export needs the 'nir' package; pip install 'nir>=1.0'") from None
    return nir


# --------------------------------------------------------------------------------------------
# modules that imported graphs need and spikeweave has no layer for
# --------------------------------------------------------------------------------------------


class SumPool2d(nn.Module):
    """Sum pooling (NIR ``SumPool2d``) on ``[N, C, H, W]``: average pooling without dividing.

    ``avg_pool2d`` with ``divisor_override=1`` adds the window exactly as a sum would, with no
    multiply-back that could round differently. Wrap it in :class:`TimeFolded` for
    ``[T, B, C, H, W]``.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            count_include_pad=True,
            divisor_override=1,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class InputScale(nn.Module):
    """Multiply the input current by a fixed factor ``[...]`` (broadcast over ``[T, B, ...]``).

    Used on import when a NIR neuron's ``R·dt/tau`` is neither ``1/tau_steps`` (LIF with
    ``decay_input=True``) nor 1 (``decay_input=False``), or ``R·dt != 1`` for IF.
    """

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * self.scale

    def extra_repr(self) -> str:
        return f"shape={tuple(self.scale.shape)}"


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    return int(arr[0]), int(arr[1])


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


@dataclass
class _Leaf:
    """One layer in forward order: its dotted name, the module, and whether it was time-folded."""

    name: str
    module: nn.Module
    folded: bool


def _leaves(module: nn.Module, prefix: str, folded: bool) -> Iterator[_Leaf]:
    if isinstance(module, TimeFolded):
        yield from _leaves(module.module, prefix, True)
    elif isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name, folded)
    else:
        yield _Leaf(prefix or type(module).__name__.lower(), module, folded)


def _refuse(name: str, what: str, fix: str) -> ConfigError:
    return ConfigError(f"NIR export: layer '{name}' ({what}) {fix}")


def _full(shape: Sequence[int], value: float) -> np.ndarray:
    # Neuron parameters in float64: tau in seconds would lose digits in float32.
    return np.full(tuple(int(s) for s in shape), float(value), dtype=np.float64)


def _weight(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


class _Exporter:
    """Turns the leaves of a model into NIR nodes, tracking the per-sample shape."""

    def __init__(self, dt: float, input_shape: Sequence[int]) -> None:
        self.nir = _nir()
        self.dt = dt
        self.shape: tuple[int, ...] = tuple(int(s) for s in input_shape)
        self.nodes: OrderedDict[str, Any] = OrderedDict()
        self.last_affine: str | None = None  # the node a following BatchNorm may fold into

    def add(self, name: str, node: Any, affine: bool = False) -> None:
        key = name
        n = 2
        while key in self.nodes or key in ("input", "output"):
            key, n = f"{name}_{n}", n + 1
        self.nodes[key] = node
        self.last_affine = key if affine else None

    def leaf(self, leaf: _Leaf) -> None:
        m, name, nir = leaf.module, leaf.name, self.nir
        if isinstance(m, nn.Dropout | nn.Identity):
            return  # identity at inference, which is what a NIR graph describes
        if isinstance(m, SpikingNeuron):
            self.neuron(name, m)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            self.batch_norm(name, m)
        elif isinstance(m, nn.Linear):
            if len(self.shape) != 1:
                raise _refuse(
                    name,
                    "Linear",
                    f"gets a {self.shape} input per sample; NIR's Affine maps "
                    "vectors: put a Flatten before it",
                )
            if m.in_features != self.shape[0]:
                raise _refuse(name, "Linear", f"expects {m.in_features} inputs, got {self.shape}")
            w = _weight(m.weight)
            if m.bias is None:
                self.add(name, nir.Linear(weight=w), affine=True)
            else:
                self.add(name, nir.Affine(weight=w, bias=_weight(m.bias)), affine=True)
            self.shape = (m.out_features,)
        elif isinstance(m, nn.Conv2d):
            self.conv(name, m, leaf.folded)
        elif isinstance(m, nn.Flatten):
            self.flatten(name, m, leaf.folded)
        elif isinstance(m, nn.AvgPool2d | SumPool2d):
            self.pool(name, m, leaf.folded)
        elif isinstance(m, nn.MaxPool2d):
            raise _refuse(
                name,
                "MaxPool2d",
                "has no NIR node; replace it with nn.AvgPool2d (or sum "
                "pooling) and retrain to export",
            )
        elif isinstance(m, PopulationReadout):
            self.readout(name, m)
        else:
            raise _refuse(
                name,
                type(m).__name__,
                "has no NIR mapping in spikeweave; supported: IF, LIF, "
                "Linear, Conv2d, BatchNorm (folded), Flatten, AvgPool2d, SumPool2d, Dropout, "
                "PopulationReadout",
            )

    def neuron(self, name: str, m: SpikingNeuron) -> None:
        nir, kind = self.nir, type(m).__name__
        if type(m) not in (LIF, IF):
            raise _refuse(
                name,
                kind,
                "has no exact NIR node (NIR's LIF and IF have no learnable k·h "
                "rectification or other charge); train with neuron 'lif' or 'if' to export",
            )
        if m.reset != "hard":
            raise _refuse(
                name,
                f"{kind}(reset='soft')",
                "has no NIR equivalent: NIR neurons reset to "
                "v_reset; retrain with reset='hard' to export",
            )
        shape = self.shape
        meta: dict[str, Any] = {"spikeweave_neuron": kind}
        if isinstance(m, LIF):
            meta["tau_steps"] = float(m.tau)
            # with tau = 1 step both input conventions give R = 1: keep which one it was
            meta["decay_input"] = bool(m.decay_input)
            node = nir.LIF(
                tau=_full(shape, m.tau * self.dt),
                r=_full(shape, 1.0 if m.decay_input else m.tau),
                v_leak=_full(shape, m.v_reset),
                v_threshold=_full(shape, m.threshold),
                v_reset=_full(shape, m.v_reset),
                metadata=meta,
            )
        else:
            node = nir.IF(
                r=_full(shape, 1.0 / self.dt),
                v_threshold=_full(shape, m.threshold),
                v_reset=_full(shape, m.v_reset),
                metadata=meta,
            )
        self.add(name, node)

    def batch_norm(self, name: str, m: nn.modules.batchnorm._BatchNorm) -> None:
        nir = self.nir
        if m.training:
            raise _refuse(
                name,
                type(m).__name__,
                "is in training mode (batch statistics); call "
                "model.eval() so it can be folded into the layer before it",
            )
        if m.running_mean is None or m.running_var is None:
            raise _refuse(
                name,
                type(m).__name__,
                "has no running statistics to fold; use track_running_stats=True",
            )
        if self.last_affine is None:
            raise _refuse(
                name,
                type(m).__name__,
                "does not follow a Linear or Conv2d, so it cannot be "
                "folded into one; NIR has no BatchNorm node",
            )
        key = self.last_affine
        prev = self.nodes[key]
        # y = γ·(Wx + b − μ)/√(σ² + ε) + β  =  (s·W)x + s·(b − μ) + β, with s = γ/√(σ² + ε);
        # computed in float64 so the folded weights are the exact product rounded once.
        var = m.running_var.detach().double().cpu().numpy()
        mean = m.running_mean.detach().double().cpu().numpy()
        s = 1.0 / np.sqrt(var + m.eps)
        shift = -mean * s
        if m.affine:
            gamma = m.weight.detach().double().cpu().numpy()
            beta = m.bias.detach().double().cpu().numpy()
            s, shift = s * gamma, shift * gamma + beta
        w = np.asarray(prev.weight, dtype=np.float64)
        dtype = np.asarray(prev.weight).dtype
        b = np.asarray(getattr(prev, "bias", np.zeros(w.shape[0])), dtype=np.float64)
        w_new = (w * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(dtype)
        b_new = (b * s + shift).astype(dtype)
        parent = name.rpartition(".")[0]
        if parent and key.rpartition(".")[0] == parent and parent not in self.nodes:
            # Linear→BatchNorm in one block ("fc1.0", "fc1.1") becomes one node named "fc1"
            self.nodes = OrderedDict((parent if k == key else k, v) for k, v in self.nodes.items())
            key = parent
        if isinstance(prev, nir.Conv2d):
            self.nodes[key] = nir.Conv2d(
                input_shape=prev.input_shape,
                weight=w_new,
                stride=prev.stride,
                padding=prev.padding,
                dilation=prev.dilation,
                groups=prev.groups,
                bias=b_new,
            )
        else:
            self.nodes[key] = nir.Affine(weight=w_new, bias=b_new)
        self.last_affine = None

    def conv(self, name: str, m: nn.Conv2d, folded: bool) -> None:
        nir = self.nir
        if not folded:
            raise _refuse(name, "Conv2d", "runs on [T, B, ...] directly; wrap it in TimeFolded")
        if len(self.shape) != 3 or self.shape[0] != m.in_channels:
            raise _refuse(name, "Conv2d", f"expects [C={m.in_channels}, H, W], got {self.shape}")
        if m.padding_mode != "zeros":
            raise _refuse(name, "Conv2d", f"pads with {m.padding_mode!r}; NIR pads with zeros")
        bias = (
            _weight(m.bias)
            if m.bias is not None
            else np.zeros(m.out_channels, dtype=_weight(m.weight).dtype)
        )
        node = nir.Conv2d(
            input_shape=tuple(self.shape[1:]),
            weight=_weight(m.weight),
            stride=tuple(m.stride),
            padding=m.padding if isinstance(m.padding, str) else tuple(m.padding),
            dilation=tuple(m.dilation),
            groups=int(m.groups),
            bias=bias,
        )
        self.add(name, node, affine=True)
        self.shape = tuple(int(v) for v in node.output_type["output"])

    def flatten(self, name: str, m: nn.Flatten, folded: bool) -> None:
        if not folded:
            raise _refuse(
                name,
                "Flatten",
                "runs on [T, B, ...] directly and would flatten time; wrap it in TimeFolded",
            )
        # torch dims count the folded batch axis first; NIR shapes have no batch axis.
        rank = len(self.shape) + 1
        start = m.start_dim if m.start_dim >= 0 else rank + m.start_dim
        end = m.end_dim if m.end_dim >= 0 else rank + m.end_dim
        if start < 1:
            raise _refuse(name, "Flatten", "flattens the batch axis; use start_dim >= 1")
        # Written counted from the end (start_dim -3 for [C, H, W]): nir reads the dims per
        # sample, while Norse's and snnTorch's importers hand them to torch.nn.Flatten on a
        # batched [B, ...] step; negative dims name the same axes for both (and unbatched).
        node = self.nir.Flatten(
            input_type={"input": np.array(self.shape)}, start_dim=start - rank, end_dim=end - rank
        )
        self.add(name, node)
        self.shape = tuple(int(v) for v in node.output_type["output"])

    def pool(self, name: str, m: nn.Module, folded: bool) -> None:
        nir = self.nir
        kind = type(m).__name__
        if not folded:
            raise _refuse(name, kind, "runs on [T, B, ...] directly; wrap it in TimeFolded")
        if len(self.shape) != 3:
            raise _refuse(name, kind, f"expects [C, H, W] per sample, got {self.shape}")
        k, stride, pad = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
        is_sum = isinstance(m, SumPool2d)
        if isinstance(m, nn.AvgPool2d):
            if m.ceil_mode:
                raise _refuse(name, kind, "uses ceil_mode=True; NIR pools with floor")
            if m.divisor_override not in (None, 1):
                raise _refuse(name, kind, "has a divisor_override; NIR has sum or average only")
            if m.divisor_override is None and any(pad) and not m.count_include_pad:
                raise _refuse(name, kind, "excludes padding from the average; NIR does not")
            is_sum = m.divisor_override == 1
        cls = nir.SumPool2d if is_sum else nir.AvgPool2d
        self.add(
            name,
            cls(kernel_size=np.array(k), stride=np.array(stride), padding=np.array(pad)),
        )
        c, h, w = self.shape
        self.shape = (
            c,
            (h + 2 * pad[0] - k[0]) // stride[0] + 1,
            (w + 2 * pad[1] - k[1]) // stride[1] + 1,
        )

    def readout(self, name: str, m: PopulationReadout) -> None:
        n = m.num_classes * m.population
        if self.shape != (n,):
            raise _refuse(name, "PopulationReadout", f"expects ({n},) inputs, got {self.shape}")
        # the group mean as a fixed Affine: row c averages outputs c·P .. c·P + P − 1
        w = np.kron(np.eye(m.num_classes), np.full((1, m.population), 1.0 / m.population))
        node = self.nir.Affine(
            weight=w.astype(np.float32),
            bias=np.zeros(m.num_classes, dtype=np.float32),
            metadata={"spikeweave_layer": "PopulationReadout", "population": m.population},
        )
        self.add(name, node)
        self.shape = (m.num_classes,)


def _check_dt(dt: object) -> float:
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not math.isfinite(dt) or dt <= 0:
        raise ConfigError(f"dt is the duration of one step in seconds and must be > 0, got {dt!r}")
    return float(dt)


def to_nir(
    model: nn.Module,
    *,
    dt: float,
    input_shape: Sequence[int],
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """The NIR graph (``nir.NIRGraph``) of a spikeweave model, ``Input → layers → Output``.

    Args:
        model: an ``nn.Sequential`` of :class:`TimeFolded` stateless layers and neurons
            (``MLP``, or your own), run on ``[T, B, *input_shape]``. Put it in eval mode first
            (BatchNorm is folded from its running statistics).
        dt: seconds per simulation step. Neuron ``tau`` (steps) becomes ``tau·dt`` seconds.
        input_shape: one sample's shape without ``T`` and ``B``, e.g. ``(1, 8, 8)``.
        metadata: extra graph metadata (flat ``str`` → ``str``/number), e.g. the encoder.

    Raises ``ConfigError`` (one line, naming the layer) for anything NIR cannot express
    exactly: soft reset, KLIF, MaxPool2d, BatchNorm that does not follow Linear/Conv2d, ...
    """
    nir = _nir()
    dt = _check_dt(dt)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"to_nir: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(model, nn.Sequential | TimeFolded | SpikingNeuron):
        raise ConfigError(
            f"to_nir: {type(model).__name__} has its own forward; export an nn.Sequential of "
            "TimeFolded layers and neurons (e.g. spikeweave.models.MLP)"
        )
    exporter = _Exporter(dt, input_shape)
    in_shape = exporter.shape
    for leaf in _leaves(model, "", False):
        exporter.leaf(leaf)
    nodes: OrderedDict[str, Any] = OrderedDict(
        input=nir.Input(input_type={"input": np.array(in_shape)})
    )
    nodes.update(exporter.nodes)
    nodes["output"] = nir.Output(output_type={"output": np.array(exporter.shape)})
    names = list(nodes)
    meta: dict[str, Any] = {"generator": FORMAT_NOTE, "dt": dt, "time_unit": "s"}
    meta.update(metadata or {})
    return nir.NIRGraph(
        nodes=dict(nodes), edges=list(zip(names[:-1], names[1:], strict=True)), metadata=meta
    )


PEERS = ("nir", "norse", "snntorch")
"""Targets of :func:`save_nir`'s ``peer=``: ``nir`` (no peer's limits checked), ``norse``
(Norse 1.1's ``from_nir``) and ``snntorch`` (snnTorch 1.0's ``import_from_nir``)."""

SNNTORCH_DT = 1e-4
"""The step snnTorch 1.0's importer assumes (``beta = 1 − 1e-4/tau``), in seconds."""


def check_peer(graph: Any, peer: str, dt: float) -> None:
    """Refuse, in one line, a graph that ``peer`` would load as a different network.

    The file is the same for every peer (Flatten dims counted from the end read alike in nir,
    Norse and snnTorch); this checks the limits measured with Norse 1.1 and snnTorch 1.0
    (docs/nir.md): Norse has no AvgPool2d import, ignores LIF's ``R`` and resets to 0;
    snnTorch assumes ``dt = 1e-4``, imports IF only with ``R = 1`` and refuses ``v_leak ≠ 0``;
    both pool sums without padding. ``peer = "nir"`` checks nothing.
    """
    nir = _nir()
    if peer not in PEERS:
        raise ConfigError(f"NIR export: unknown peer {peer!r}; choose one of {', '.join(PEERS)}")
    if peer == "nir":
        return
    label = {"norse": "Norse 1.1", "snntorch": "snnTorch 1.0"}[peer]
    if peer == "snntorch" and not math.isclose(dt, SNNTORCH_DT, rel_tol=1e-12):
        raise ConfigError(
            f"NIR export for {label}: dt = {dt:g} s, but snnTorch's importer assumes dt = 1e-4 s "
            "(its beta = 1 − 1e-4/tau); export with --dt 1e-4"
        )
    for key, node in graph.nodes.items():
        kind = type(node).__name__

        def refuse(why: str, fix: str, key: str = key, kind: str = kind) -> ConfigError:
            return ConfigError(f"NIR export for {label}: node '{key}' ({kind}) {why}; {fix}")

        if isinstance(node, nir.AvgPool2d) and peer == "norse":
            raise refuse("has no Norse import", "use sum pooling (SumPool2d) or --for snntorch")
        if isinstance(node, nir.SumPool2d) and np.any(np.asarray(node.padding) != 0):
            raise refuse(f"pads; {label} sums without padding", "use padding=0")
        if isinstance(node, nir.IF) and peer == "snntorch":
            raise refuse(
                "cannot be imported: snnTorch takes IF only with R = 1 (spikeweave writes "
                "R = 1/dt)",
                "train with neuron 'lif' or use --for norse",
            )
        if isinstance(node, nir.LIF | nir.IF):
            if np.any(np.asarray(node.v_reset) != 0):
                what = "drops v_reset (resets to 0)" if peer == "norse" else "refuses v_leak ≠ 0"
                raise refuse(f"has v_reset ≠ 0 and {label} {what}", "train with v_reset = 0")
        if isinstance(node, nir.LIF) and peer == "norse" and np.any(np.asarray(node.r) != 1):
            raise refuse(
                "has R ≠ 1 (decay_input=False), which Norse ignores",
                "train with decay_input=True (the default) for Norse",
            )


# --------------------------------------------------------------------------------------------
# reading a NIR file we did not write
# --------------------------------------------------------------------------------------------
# Limits on what a NIR file may declare, checked before anything is read or allocated. They are
# module constants so code can raise them (``spikeweave.export.nir.MAX_NIR_TOTAL_BYTES = ...``);
# nothing in a file can. Compressed datasets inflate by up to ~1000x, so the limits bound the
# decoded sizes the file declares, not the file's own size.

MAX_NIR_ARRAY_BYTES = 128 * 2**20
"""Largest decoded size of one dataset (its shape times its item size), in bytes."""

MAX_NIR_TOTAL_BYTES = 256 * 2**20
"""Largest decoded size of all datasets together (weights and neuron parameters), in bytes."""

MAX_NIR_OBJECTS = 20_000
"""Most groups and datasets in one file."""

MAX_NIR_DEPTH = 32
"""Deepest nesting of groups (a graph inside a graph adds two levels)."""

MAX_NIR_STRINGS = 100_000
"""Most variable-length strings (node types, edge names, metadata) in one file."""

MAX_NIR_STRING_BYTES = 16 * 2**20
"""Largest size of all variable-length strings together, in bytes."""

MAX_NIR_STEPS = 100_000
"""Largest number of time steps ``T`` taken from a file's metadata (``--steps`` overrides)."""

# HDF5 filters that decode inside the library (no plugin is ever loaded): gzip, shuffle,
# fletcher32 checksums and h5py's own LZF.
_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
# Fixed-length byte strings and variable-length strings count this many bytes per element
# against the size limits (their text is counted separately as it is read).
_STRING_SLOT = 64
# Neuron parameters nir broadcasts against each other when it builds the node (w_in·ones(v_leak)):
# different shapes would multiply, so they must agree before nir sees them.
_NEURON_TYPES = {"LIF", "IF", "LI", "I", "CubaLIF", "CubaLI", "Threshold"}
_NEURON_PARAMS = ("tau", "r", "v_leak", "v_threshold", "v_reset", "tau_mem", "tau_syn", "w_in")


class _Hdf5Reader:
    """Checks an open HDF5 file's links and datasets (no data read), then reads it as nested
    dicts of numpy arrays and ``str`` like ``nir.serialization.hdf2dict`` does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.objects = 0
        self.total = 0
        self.strings = 0
        self.string_bytes = 0
        self.seen: set[Any] = set()

    def refuse(self, where: str, problem: str) -> DataError:
        return DataError(f"{self.path}: '{where}' {problem}; spikeweave reads only NIR files")

    def read(self, f: Any) -> dict[str, Any]:
        plan = self.check_group(f, "", 0)
        return self.load(plan)

    def check_group(self, group: Any, where: str, depth: int) -> dict[str, Any]:
        """``{name: sub-plan or dataset}`` for ``group``; a DataError for anything but hard
        links to groups and plain in-file datasets. Reads no data."""
        import h5py

        if depth > MAX_NIR_DEPTH:
            raise self.refuse(where, f"is nested deeper than {MAX_NIR_DEPTH} groups")
        plan: dict[str, Any] = {}
        for name in group:
            here = f"{where}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise self.refuse(here, "is an external link (to an object in another file)")
            if isinstance(link, h5py.SoftLink):
                raise self.refuse(here, "is a soft link; a NIR file holds plain groups and data")
            if not isinstance(link, h5py.HardLink):
                raise self.refuse(here, f"is a {type(link).__name__} link")
            obj = group.get(name)
            # The same object under two names would be read twice (or forever, for a group
            # linked into itself): nir.write never writes one.
            if obj.id in self.seen:
                raise self.refuse(here, "is a second link to an object already read")
            self.seen.add(obj.id)
            self.objects += 1
            if self.objects > MAX_NIR_OBJECTS:
                raise self.refuse(here, f"is beyond the limit of {MAX_NIR_OBJECTS} objects")
            if isinstance(obj, h5py.Group):
                plan[name] = self.check_group(obj, here, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                self.check_dataset(obj, here)
                plan[name] = obj
            else:
                raise self.refuse(here, f"is a {type(obj).__name__}, not a group or dataset")
        return plan

    def check_dataset(self, dset: Any, where: str) -> None:
        """Storage, filters, type and declared size of one dataset, before any data is read."""
        import h5py

        plist = dset.id.get_create_plist()
        # External storage and virtual datasets take their bytes from other files.
        if plist.get_external_count() > 0:
            raise self.refuse(where, "keeps its data in an outside file (HDF5 external storage)")
        layout = plist.get_layout()
        if layout == h5py.h5d.VIRTUAL:
            raise self.refuse(where, "is a virtual dataset (its data lives in other files)")
        if layout not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
            raise self.refuse(where, f"has HDF5 storage layout {layout}")
        for i in range(plist.get_nfilters()):
            code = plist.get_filter(i)[0]
            if code not in _FILTERS:
                raise self.refuse(
                    where, f"uses HDF5 filter {code}; only {', '.join(_FILTERS.values())} are read"
                )
        dtype = dset.dtype
        string = h5py.check_string_dtype(dtype)
        if dtype.kind == "c":
            raise self.refuse(where, f"holds complex numbers ({dtype}); NIR values are real")
        if string is None and (dtype.kind not in "biuf" or dtype.shape or dtype.names):
            raise self.refuse(where, f"holds HDF5 type {dtype}, not numbers or text")
        shape = () if dset.shape is None else tuple(int(n) for n in dset.shape)
        count = math.prod(shape)
        item = _STRING_SLOT if string is not None and string.length is None else dtype.itemsize
        size = count * item
        if layout == h5py.h5d.CHUNKED:
            # a chunk is decoded whole, so it must fit the same limit as the dataset
            chunk = plist.get_chunk()
            if math.prod(int(n) for n in chunk) * item > MAX_NIR_ARRAY_BYTES:
                raise self.refuse(where, f"has chunks of {tuple(chunk)} x {item} bytes, over "
                                  f"MAX_NIR_ARRAY_BYTES ({MAX_NIR_ARRAY_BYTES})")  # fmt: skip
        if size > MAX_NIR_ARRAY_BYTES:
            raise self.refuse(
                where,
                f"declares shape {shape} of {dtype} ({size} bytes), over "
                f"MAX_NIR_ARRAY_BYTES ({MAX_NIR_ARRAY_BYTES})",
            )
        self.total += size
        if self.total > MAX_NIR_TOTAL_BYTES:
            raise self.refuse(
                where,
                f"brings the declared data to {self.total} bytes, over "
                f"MAX_NIR_TOTAL_BYTES ({MAX_NIR_TOTAL_BYTES})",
            )
        if string is not None and string.length is None:
            self.strings += count
            if self.strings > MAX_NIR_STRINGS:
                raise self.refuse(
                    where, f"brings the strings over MAX_NIR_STRINGS ({MAX_NIR_STRINGS})"
                )

    def load(self, plan: dict[str, Any], where: str = "") -> dict[str, Any]:
        """The data of a checked plan, as nested dicts like ``nir.serialization.hdf2dict``."""
        import h5py

        out: dict[str, Any] = {}
        for name, item in plan.items():
            here = f"{where}/{name}"
            if isinstance(item, dict):
                out[name] = self.load(item, here)
                continue
            string = h5py.check_string_dtype(item.dtype)
            value = self.load_strings(item, here) if string and not string.length else item[()]
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf8")
                except UnicodeDecodeError:
                    raise self.refuse(here, "holds text that is not UTF-8") from None
            out[name] = value
        return out

    def load_strings(self, dset: Any, where: str) -> Any:
        """A variable-length string dataset, one element at a time: each element may point at
        any string in the file, so their sizes are counted as they are read."""
        if dset.shape is None or dset.shape == ():
            value = dset[()]
            self.count_string(value, where)
            return value
        values = np.empty(dset.shape, dtype=object)
        for idx in np.ndindex(*dset.shape):
            values[idx] = dset[idx]
            self.count_string(values[idx], where)
        return values

    def count_string(self, value: Any, where: str) -> None:
        self.string_bytes += len(value) if isinstance(value, bytes | str) else 0
        if self.string_bytes > MAX_NIR_STRING_BYTES:
            raise self.refuse(
                where, f"brings the text over MAX_NIR_STRING_BYTES ({MAX_NIR_STRING_BYTES})"
            )


def _check_neuron_shapes(path: Path, node: dict[str, Any], where: str) -> None:
    """Refuse neuron parameters of different shapes before nir broadcasts them together."""
    if node.get("type") in _NEURON_TYPES:
        shapes = {
            key: np.shape(node[key])
            for key in _NEURON_PARAMS
            if key in node and np.size(node[key]) != 1
        }
        if len(set(shapes.values())) > 1:
            raise DataError(
                f"{path}: neuron '{where}' has parameters of different shapes {shapes}; each "
                "must have one value per neuron"
            )
    for key, value in node.items():
        if isinstance(value, dict):
            _check_neuron_shapes(path, value, f"{where}/{key}" if where != "node" else key)


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


def _chain(graph: Any) -> list[tuple[str, Any]]:
    """The graph's nodes from its Input to its Output, if it is a chain; else a ConfigError."""
    nir = _nir()
    nodes: dict[str, Any] = dict(graph.nodes)
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in graph.edges:
        if a not in nodes or b not in nodes:
            raise ConfigError(f"NIR import: edge ({a!r}, {b!r}) names a node the graph lacks")
        succ[a].append(b)
        pred[b].append(a)
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise ConfigError(
            f"NIR import: the graph has {len(inputs)} Input nodes; spikeweave imports graphs "
            "with exactly one input"
        )
    order, key = [], inputs[0]
    while True:
        order.append((key, nodes[key]))
        if isinstance(nodes[key], nir.Output):
            break
        nxt = succ[key]
        if len(nxt) != 1:
            raise ConfigError(
                f"NIR import: node '{key}' has {len(nxt)} successors; spikeweave imports "
                "feed-forward chains only (no branches or recurrence)"
            )
        if len(pred[nxt[0]]) != 1:
            raise ConfigError(
                f"NIR import: node '{nxt[0]}' has {len(pred[nxt[0]])} inputs; spikeweave "
                "imports feed-forward chains only (no merges or recurrence)"
            )
        key = nxt[0]
        if len(order) > len(nodes):
            raise ConfigError("NIR import: the graph has a cycle; spikeweave imports chains only")
    if len(order) != len(nodes):
        left = sorted(set(nodes) - {k for k, _ in order})
        raise ConfigError(
            f"NIR import: nodes {left} are not on the path from Input to Output; spikeweave "
            "imports single chains only"
        )
    return order


def _uniform(name: str, what: str, values: Any) -> float:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(arr == arr[0]):
        raise ConfigError(
            f"NIR import: node '{name}' has per-neuron {what}; spikeweave neurons take one "
            f"{what} per layer (fold the differences into the weights first)"
        )
    return float(arr[0])


def _module_name(key: str, used: set[str]) -> str:
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in key) or "layer"
    name, n = base, 2
    while name in used:
        name, n = f"{base}_{n}", n + 1
    used.add(name)
    return name


def _tensor(values: Any) -> torch.Tensor:
    # spikeweave models run in float32; a float64 weight is rounded once here.
    return torch.from_numpy(np.array(values, dtype=np.float32, copy=True))


def _is_population_readout(node: Any) -> int | None:
    """``P`` if ``node`` is exactly the group-mean Affine :func:`to_nir` writes, else None."""
    w = np.asarray(node.weight)
    b = np.asarray(node.bias)
    if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] % w.shape[0] or np.any(b != 0):
        return None
    p = w.shape[1] // w.shape[0]
    expected = np.kron(np.eye(w.shape[0]), np.full((1, p), 1.0 / p)).astype(w.dtype)
    return p if np.array_equal(w, expected) else None


@dataclass
class _Imported:
    """An imported layer: the module and what :mod:`.cli` needs to describe it as an MLP."""

    kind: str  # "flatten", "affine", "neuron", "scale", "readout", "conv", "pool"
    module: nn.Module
    node: Any


def _tol(values: Any) -> float:
    """Relative tolerance for numbers read from ``values``: a few ulps of their float type
    (snnTorch writes float32, so its ``R/tau_steps`` is 1 only to about 1e-7)."""
    arr = np.asarray(values)
    eps = np.finfo(arr.dtype).eps if np.issubdtype(arr.dtype, np.floating) else 2.0**-52
    return float(8 * eps)


def _simplest_steps(tau_s: float, dt: float, stored: Any) -> float:
    """The shortest decimal ``d`` (in steps) whose ``d·dt`` rounds to the stored tau.

    A file holds ``tau·dt`` rounded to its float type, so ``tau_s / dt`` is off by a rounding
    (``3 · 0.1 / 0.1 = 3.0000000000000004``); the shortest decimal that reproduces the stored
    value is the one the writer meant, as ``repr`` does for floats.
    """
    arr = np.asarray(stored)
    ftype = arr.dtype.type if np.issubdtype(arr.dtype, np.floating) else np.float64
    target = ftype(tau_s)
    raw = tau_s / dt
    for digits in range(1, 18):
        d = float(f"{raw:.{digits}g}")
        if ftype(d * dt) == target:
            return d
    return raw


def _neuron_tau_steps(name: str, node: Any, dt: float, taus: Any = None) -> float:
    taus = node.tau if taus is None else taus
    tau_s = _uniform(name, "tau", taus)
    tau_steps = _simplest_steps(tau_s, dt, taus)
    stored = node.metadata.get("tau_steps") if isinstance(node.metadata, dict) else None
    if stored is not None:
        stored = meta_number(f"metadata 'tau_steps' of node '{name}'", stored)
        # the exporter's exact value, unless the file was changed since
        if math.isclose(stored * dt, tau_s, rel_tol=_REL_TOL):
            tau_steps = stored
    if not tau_steps >= 1.0:
        raise ConfigError(
            f"NIR import: node '{name}' has tau = {tau_s:g} s, below one step (dt = {dt:g} s); "
            "spikeweave's forward-Euler LIF needs tau >= dt: pass the dt the file was made for"
        )
    return tau_steps


def _import_neuron(
    name: str, node: Any, dt: float | None, shape: tuple[int, ...]
) -> list[_Imported]:
    nir = _nir()
    kind = type(node).__name__
    if dt is None:
        raise ConfigError(
            f"NIR import: node '{name}' ({kind}) needs the step dt in seconds, which the file "
            "does not record; pass dt= (snnTorch writes its files for dt = 1e-4)"
        )
    threshold = _uniform(name, "v_threshold", node.v_threshold)
    v_reset = _uniform(name, "v_reset", node.v_reset)
    out: list[_Imported] = []
    r = np.asarray(node.r, dtype=np.float64)
    if isinstance(node, nir.LIF | nir.CubaLIF):
        v_leak = _uniform(name, "v_leak", node.v_leak)
        if v_leak != v_reset:
            raise ConfigError(
                f"NIR import: node '{name}' ({kind}) leaks to v_leak = {v_leak:g} but resets to "
                f"v_reset = {v_reset:g}; spikeweave's LIF leaks to its v_reset: they must match"
            )
        taus = node.tau if isinstance(node, nir.LIF) else node.tau_mem
        if isinstance(node, nir.CubaLIF):
            # Euler step of tau_syn·dI/dt = −I + w_in·S: I[t] = (1 − dt/tau_syn)·I[t−1] + ...,
            # which is w_in·S[t] (no memory) exactly when tau_syn = dt: then CubaLIF is a LIF
            # with input R·w_in (the new current drives v in the same step, as snnTorch's
            # Synaptic and Norse's LIFCell do). Any other tau_syn has no spikeweave neuron.
            syn_s = _uniform(name, "tau_syn", node.tau_syn)
            # the same few-ulp tolerance as R: Norse at dt = 1e-3 writes tau_syn = dt·dt as
            # float32 1.0000001e-06, one ulp from the dt = 1e-6 its file needs
            if not math.isclose(syn_s / dt, 1.0, rel_tol=_tol(node.tau_syn)):
                syn = _simplest_steps(syn_s, dt, node.tau_syn)
                raise ConfigError(
                    f"NIR import: node '{name}' (CubaLIF) has tau_syn = {syn:.9g} steps "
                    f"({syn_s:.9g} s at dt = {dt:.9g} s); spikeweave "
                    "has no current-based neuron, so only tau_syn = dt (no synaptic memory) "
                    "imports: export the source neuron with tau_syn = dt or as LIF"
                )
            r = r * np.asarray(node.w_in, dtype=np.float64)
        tau = _neuron_tau_steps(name, node, dt, taus)
        # Input coefficient of the Euler step: (dt/tau_nir)·R = R/tau_steps.
        stored = node.metadata.get("decay_input") if isinstance(node.metadata, dict) else None
        tol = max(_tol(node.r), _tol(taus))
        if stored is not None:
            stored = meta_bool(f"metadata 'decay_input' of node '{name}'", stored)
        if np.allclose(r, 1.0, rtol=tol, atol=0.0) and not (
            tau == 1.0 and stored is not None and not stored
        ):
            decay_input = True
        else:
            decay_input = False
            coeff = r / tau
            if not np.allclose(coeff, 1.0, rtol=tol, atol=0.0):
                out.append(_Imported("scale", InputScale(_tensor(coeff.reshape(shape))), node))
        neuron: SpikingNeuron = LIF(
            tau=tau, threshold=threshold, v_reset=v_reset, reset="hard", decay_input=decay_input
        )
    else:
        coeff = r * dt
        if not np.allclose(coeff, 1.0, rtol=_tol(node.r), atol=0.0):
            out.append(_Imported("scale", InputScale(_tensor(coeff.reshape(shape))), node))
        neuron = IF(threshold=threshold, v_reset=v_reset, reset="hard")
    out.append(_Imported("neuron", neuron, node))
    return out


def _torch_dim(nir_dim: int) -> int:
    """The torch dim (on a folded ``[N, ...]`` tensor) of a NIR per-sample dim."""
    return nir_dim + 1 if nir_dim >= 0 else nir_dim


def _shape_of(node: Any, key: str) -> tuple[int, ...] | None:
    types = node.input_type if key == "input" else node.output_type
    value = types.get(key) if isinstance(types, dict) else None
    return None if value is None else tuple(int(v) for v in np.asarray(value).reshape(-1))


def _import_layers(
    graph: Any, dt: float | None
) -> tuple[tuple[int, ...], list[tuple[str, _Imported]]]:
    """Input shape and the imported layers, named after their NIR nodes."""
    nir = _nir()
    order = _chain(graph)
    in_shape = _shape_of(order[0][1], "input") or ()
    shape = in_shape
    first_flatten = True
    layers: list[tuple[str, _Imported]] = []
    for idx, (key, node) in enumerate(order[1:-1], start=1):
        kind = type(node).__name__
        try:
            shape, first_flatten = _import_node(
                nir, key, node, dt, shape, first_flatten, idx == len(order) - 2, layers
            )
        except SpikeweaveError:
            raise
        except (TypeError, ValueError, OverflowError, RuntimeError, IndexError, KeyError) as exc:
            # a field of the wrong type or shape (a string stride, a 2-element groups, ...)
            msg = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise ConfigError(
                f"NIR import: node '{key}' ({kind}) has a malformed field ({msg})"
            ) from None
    return in_shape, layers


def _import_node(
    nir: Any,
    key: str,
    node: Any,
    dt: float | None,
    shape: tuple[int, ...],
    first_flatten: bool,
    is_last: bool,
    layers: list[tuple[str, _Imported]],
) -> tuple[tuple[int, ...], bool]:
    """Append the layers of one NIR node to ``layers``; the shape after it and whether the
    first Flatten is still to come."""
    kind = type(node).__name__
    for field, value in vars(node).items():
        # a float cast would drop the imaginary part without a word
        if np.iscomplexobj(value):
            raise ConfigError(
                f"NIR import: node '{key}' ({kind}) has complex values in '{field}'; "
                "spikeweave imports real numbers only"
            )
    if isinstance(node, nir.Affine | nir.Linear):
        w = np.asarray(node.weight)
        if w.ndim != 2:
            raise ConfigError(
                f"NIR import: node '{key}' ({kind}) has a {w.ndim}-D weight; spikeweave "
                "imports 2-D (matrix) weights only"
            )
        bias = isinstance(node, nir.Affine) and node.bias is not None
        pop = _is_population_readout(node) if bias and is_last else None
        if pop is not None:
            module: nn.Module = PopulationReadout(w.shape[0], pop)
            layers.append((key, _Imported("readout", module, node)))
        else:
            linear = nn.Linear(w.shape[1], w.shape[0], bias=bias)
            with torch.no_grad():
                linear.weight.copy_(_tensor(w))
                if bias:
                    linear.bias.copy_(_tensor(node.bias).reshape(-1))
            layers.append((key, _Imported("affine", TimeFolded(linear), node)))
        shape = (int(w.shape[0]),)
    elif isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)
        padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
        conv = nn.Conv2d(
            w.shape[1] * int(node.groups),
            w.shape[0],
            tuple(w.shape[2:]),
            stride=_pair(node.stride),
            padding=padding,
            dilation=_pair(node.dilation),
            groups=int(node.groups),
            bias=True,
        )
        with torch.no_grad():
            conv.weight.copy_(_tensor(w))
            conv.bias.copy_(_tensor(node.bias).reshape(-1))
        layers.append((key, _Imported("conv", TimeFolded(conv), node)))
        out = _shape_of(node, "output")
        shape = out if out else ()
    elif isinstance(node, nir.Flatten):
        # NIR dims have no batch axis; torch's count the folded T·B axis first. Negative dims
        # count from the end, the same axes in both.
        start = _torch_dim(int(node.start_dim))
        end = _torch_dim(int(node.end_dim))
        flat = nn.Flatten(start, end)
        rank = len(shape) if (first_flatten and shape) else None
        layers.append((key, _Imported("flatten", TimeFolded(flat, sample_rank=rank), node)))
        first_flatten = False
        out = _shape_of(node, "output")
        shape = out if out else ()
    elif isinstance(node, nir.SumPool2d | nir.AvgPool2d):
        k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        pool: nn.Module = (
            SumPool2d(k, s, p) if isinstance(node, nir.SumPool2d) else nn.AvgPool2d(k, s, p)
        )
        layers.append((key, _Imported("pool", TimeFolded(pool), node)))
        if len(shape) == 3:
            c, h, w_ = shape
            shape = (c, (h + 2 * p[0] - k[0]) // s[0] + 1, (w_ + 2 * p[1] - k[1]) // s[1] + 1)
    elif isinstance(node, nir.LIF | nir.IF | nir.CubaLIF):
        nshape = tuple(np.asarray(node.v_threshold).shape)
        for item in _import_neuron(key, node, dt, nshape):
            layers.append((key, item))
        shape = nshape
    else:
        raise ConfigError(
            f"NIR import: node '{key}' ({kind}) is not supported; spikeweave imports Input, "
            "Output, Affine, Linear, Conv2d, Flatten, SumPool2d, AvgPool2d, IF, LIF and "
            "CubaLIF with tau_syn = dt"
        )
    return shape, first_flatten


def read_graph(path: str | Path) -> Any:
    """The ``nir.NIRGraph`` in the NIR (HDF5) file ``path``, read as a file we did not write.

    Before any data is read, every link and dataset is checked (see :data:`MAX_NIR_ARRAY_BYTES`
    and the other limits above): only hard links, datasets stored inside the file (compact,
    contiguous or chunked with gzip/shuffle/lzf/fletcher32), real numbers or strings, and
    declared sizes within the limits. Then the data is read through the same open handle and
    given to ``nir``'s own node constructors. Any problem is a one-line ``DataError``.
    """
    nir = _nir()
    p = Path(path)
    if not p.is_file():
        raise DataError(f"NIR file {p} does not exist; pass a .nir file written by nir.write")
    import h5py

    try:
        with h5py.File(p, "r") as f:
            tree = _Hdf5Reader(p).read(f)
        node = tree.get("node")
        if not isinstance(node, dict):
            raise DataError(f"{p} is not a NIR file (it has no 'node' group)")
        _check_neuron_shapes(p, node, "node")
        node["type_check"] = True
        return nir.dict2NIRNode(node)
    except DataError:
        raise
    except Exception as exc:  # h5py, KeyError or nir's own asserts: all mean "not a NIR file"
        msg = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DataError(f"{p} is not a readable NIR file ({msg})") from None


def _graph_dt(graph: Any, dt: float | None) -> float | None:
    if dt is not None:
        return _check_dt(dt)
    stored = graph.metadata.get("dt") if isinstance(graph.metadata, dict) else None
    return None if stored is None else _check_dt(meta_number("metadata 'dt'", stored))


# Metadata comes from the file as whatever HDF5 type its writer chose (a 0-d array, bytes, a
# string where a number belongs): each value is checked for the type its reader needs.


def _shown(value: Any) -> str:
    text = repr(value)
    return (
        f"{text[:60]}... ({type(value).__name__})"
        if len(text) > 60
        else f"{text} ({type(value).__name__})"
    )


def meta_scalar(what: str, value: Any) -> Any:
    """A metadata value as a plain Python value: one-element arrays unwrapped, numpy scalars
    made Python scalars, bytes decoded as UTF-8; a one-line ``ConfigError`` otherwise."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ConfigError(
                f"NIR import: {what} is an array of shape {value.shape}; expected one value"
            )
        value = value.reshape(-1)[0]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        try:
            value = value.decode("utf8")
        except UnicodeDecodeError:
            raise ConfigError(f"NIR import: {what} is bytes that are not UTF-8 text") from None
    return value


def meta_number(what: str, value: Any) -> float:
    """A finite real number from metadata (not a bool, not text), else a ``ConfigError``."""
    value = meta_scalar(what, value)
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
    ):
        raise ConfigError(f"NIR import: {what} is {_shown(value)}; expected a finite number")
    return float(value)


def meta_steps(what: str, value: Any, limit: int | None = None) -> int:
    """A number of time steps: a positive whole number (``3`` or ``3.0``, never ``2.7``), at
    most ``limit`` when given; else a ``ConfigError``."""
    value = meta_scalar(what, value)
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or float(value) != math.floor(value)
        or value < 1
    ):
        raise ConfigError(
            f"NIR import: {what} is {_shown(value)}; the number of time steps must be a "
            "positive integer"
        )
    steps = int(value)
    if limit is not None and steps > limit:
        raise ConfigError(
            f"NIR import: {what} is {steps}, over MAX_NIR_STEPS ({limit}); pass --steps to "
            "choose T yourself"
        )
    return steps


def meta_str(what: str, value: Any) -> str:
    """A text value from metadata, else a ``ConfigError``."""
    value = meta_scalar(what, value)
    if not isinstance(value, str):
        raise ConfigError(f"NIR import: {what} is {_shown(value)}; expected text")
    return value


def meta_bool(what: str, value: Any) -> bool:
    """A boolean from metadata (``True``/``False`` or ``1``/``0``), else a ``ConfigError``."""
    value = meta_scalar(what, value)
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ConfigError(f"NIR import: {what} is {_shown(value)}; expected true or false")


def from_nir(graph: Any, dt: float | None = None) -> nn.Sequential:
    """A spikeweave model ``[T, B, *input] -> [T, B, *output]`` from a NIR chain graph.

    Args:
        graph: a ``nir.NIRGraph`` (e.g. from ``nir.read``), one Input to one Output.
        dt: seconds per step. Default: the ``dt`` in the graph's metadata (written by
            :func:`to_nir`); required for foreign files that contain neurons.

    Stateless layers are wrapped in :class:`TimeFolded`; NIR's LIF becomes ``LIF`` with
    ``tau = tau_nir / dt`` steps (``decay_input`` from ``R``), IF becomes ``IF``. The model is
    in eval mode. Unsupported nodes raise a one-line ``ConfigError`` naming the node.
    """
    _, layers = _import_layers(graph, _graph_dt(graph, dt))
    used: set[str] = set()
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    for key, item in layers:
        mods[_module_name(key if item.kind != "scale" else f"{key}_r", used)] = item.module
    return nn.Sequential(mods).eval()


def save_nir(
    run_or_model: Any,
    path: str | Path,
    *,
    dt: float,
    input_shape: Sequence[int] | None = None,
    peer: str = "nir",
) -> Path:
    """Write a run's model (a :class:`~spikeweave.training.Run`) or a model to ``path``.

    For a run the input shape comes from its data and the graph's metadata records the
    dataset, encoder, steps and task, so ``spikeweave import`` can rebuild the run; a bare
    model needs ``input_shape``. ``peer`` (one of :data:`PEERS`) refuses, before writing,
    what that library would load differently (:func:`check_peer`); the file is the same for
    all. Written with ``nir.write`` into memory, then atomically.
    """
    nir = _nir()
    meta: dict[str, Any] = {}
    model = run_or_model
    if hasattr(run_or_model, "model") and hasattr(run_or_model, "config"):
        run = run_or_model
        model = run.model
        input_shape = tuple(run.task.spec.input_shape) if input_shape is None else input_shape
        cfg = run.config
        meta = {
            "dataset": cfg.dataset,
            "encoder": cfg.encoder,
            "steps": int(cfg.effective_steps),
            "task": run.task.name,
        }
    if input_shape is None:
        raise ConfigError("save_nir: pass input_shape= (one sample's shape without T and B)")
    graph = to_nir(model, dt=dt, input_shape=input_shape, metadata=meta)
    check_peer(graph, peer, _check_dt(dt))
    buf = io.BytesIO()
    nir.write(buf, graph)
    return atomic_write_bytes(Path(path), buf.getvalue())


def load_nir(path: str | Path, dt: float | None = None) -> nn.Sequential:
    """:func:`from_nir` of the graph in ``path`` (read with ``nir.read``)."""
    return from_nir(read_graph(path), dt=dt)
