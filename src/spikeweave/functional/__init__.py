"""Pure functions on tensors: neuron dynamics and surrogate spikes. No ``nn.Module`` here.

``dynamics`` is where each neuron's charge is written, once; ``neuron`` holds the shared fire
and reset and the plain per-step reference loop; ``fused`` runs the same charge in one pass
over time (compiled CPU kernel in ``cpu_kernel``, Triton in ``triton_lif``, loaded lazily);
``memory`` says what it keeps for backward (``h``, or the input and a recompute) and packs
saved spikes at 1 bit.
"""

from .dynamics import (
    Charge,
    ChargeFunction,
    Dynamics,
    FireReset,
    IFDynamics,
    KernelSpec,
    KLIFDynamics,
    LIFDynamics,
    ResetMode,
)
from .fused import BACKENDS, neuron_multistep, select_backend
from .memory import MEMORY_MODES, pack_spikes
from .neuron import fire, reference_multistep, reset

__all__ = [
    "BACKENDS",
    "Charge",
    "ChargeFunction",
    "Dynamics",
    "FireReset",
    "IFDynamics",
    "KLIFDynamics",
    "KernelSpec",
    "LIFDynamics",
    "MEMORY_MODES",
    "ResetMode",
    "fire",
    "neuron_multistep",
    "pack_spikes",
    "reference_multistep",
    "reset",
    "select_backend",
]
