"""Pure functions on tensors: neuron dynamics and surrogate spikes. No ``nn.Module`` here.

``dynamics`` is where each neuron's charge is written, once; ``neuron`` holds the shared fire
and reset and the plain per-step reference loop; ``fused`` runs the same charge in one pass
over time (compiled CPU kernel in ``cpu_kernel``, Triton in ``triton_lif``, loaded lazily).
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
    "ResetMode",
    "fire",
    "neuron_multistep",
    "reference_multistep",
    "reset",
    "select_backend",
]
