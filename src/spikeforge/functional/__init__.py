"""Pure functions on tensors: neuron dynamics and surrogate spikes. No ``nn.Module`` here."""

from .neuron import Charge, ResetMode, fire, if_charge, lif_charge, multistep, reset

__all__ = ["Charge", "ResetMode", "fire", "if_charge", "lif_charge", "multistep", "reset"]
