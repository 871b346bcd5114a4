"""Adversarial robustness: the oscillation defense's switch and attacks that test it honestly.

- :func:`true_gradients` -- every :class:`~spikeweave.neurons.OscillatingLIF` backpropagates
  its true oscillation inside the block (for adaptive attackers and tests).
- :mod:`spikeweave.security.attacks` -- FGSM, PGD (L∞/L2), adaptive PGD (true gradients +
  EOT), adaptive PGD over the attacker's choice of surrogate, transfer and Square Attack, on a
  :func:`~spikeweave.load_run` run or any ``nn.Module`` classifier of images in ``[0, 1]``;
  the per-image worst case over several attacks.
- :mod:`spikeweave.security.reference` -- the Adversarial Robustness Toolbox beside ours: its
  PGD for cross-checks and an AutoAttack-style ensemble with a per-image worst case
  (``pip install 'spikeweave[attacks]'``).
- :mod:`spikeweave.security.robustbench` -- RobustBench-style JSON records of an evaluation
  (threat model, ε, clean, per-attack and per-image worst-case accuracy, n, seeds, version,
  commit), written atomically (``spikeweave attack --robustbench``).
- :mod:`spikeweave.security.adv_train` -- PGD-k adversarial training, ``--method adv-train``.
- :mod:`spikeweave.security.backdoor` -- BadNets poisoning (``poison``, ``PoisonedDataset``,
  the ``backdoor`` training-split transform), attack success rate, the 51 held-out triggers.
- :mod:`spikeweave.security.mine` -- MINE (Donsker–Varadhan) mutual-information estimator.
- :mod:`spikeweave.security.mesa` -- MESA: trigger generators per β, target detection, the
  single-trigger baseline and the fine-tuning defense (``spikeweave backdoor scan|defend``).
"""

from .defense import defended_copy, oscillating_neurons, set_oscillation, true_gradients

__all__ = ["defended_copy", "oscillating_neurons", "set_oscillation", "true_gradients"]
