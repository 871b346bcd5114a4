"""Pure functions on tensors: neuron dynamics and surrogate spikes. No ``nn.Module`` here.

``neuron`` holds the plain per-step reference; ``dynamics`` describes a neuron's charge for the
fused multi-step path in ``fused`` (compiled CPU kernel in ``cpu_kernel``, Triton in
``triton_lif``, loaded lazily).
"""

from .dynamics import Dynamics, FireReset, IFDynamics, KernelSpec, KLIFDynamics, LIFDynamics
from .fused import BACKENDS, neuron_multistep, reference_multistep, select_backend
from .neuron import Charge, ResetMode, fire, if_charge, lif_charge, multistep, reset

__all__ = [
    "BACKENDS",
    "Charge",
    "Dynamics",
    "FireReset",
    "IFDynamics",
    "KLIFDynamics",
    "KernelSpec",
    "LIFDynamics",
    "ResetMode",
    "fire",
    "if_charge",
    "lif_charge",
    "multistep",
    "neuron_multistep",
    "reference_multistep",
    "reset",
    "select_backend",
]
