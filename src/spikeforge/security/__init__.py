"""Adversarial robustness: the oscillation defense's switch and attacks that test it honestly.

- :func:`true_gradients` -- every :class:`~spikeforge.neurons.OscillatingLIF` backpropagates
  its true oscillation inside the block (for adaptive attackers and tests).
- :mod:`spikeforge.security.attacks` -- FGSM, PGD (L∞/L2), adaptive PGD (true gradients +
  EOT), transfer and Square Attack, on a :func:`~spikeforge.load_run` run or any ``nn.Module``
  classifier of images in ``[0, 1]``.
- :mod:`spikeforge.security.adv_train` -- PGD-k adversarial training, ``--method adv-train``.
"""

from .defense import defended_copy, oscillating_neurons, set_oscillation, true_gradients

__all__ = ["defended_copy", "oscillating_neurons", "set_oscillation", "true_gradients"]
