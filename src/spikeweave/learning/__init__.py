"""Training methods beyond surrogate BPTT: NA gradients, noisy single-step training, local rules.

Each module registers its method with the trainer lazily (``training.methods.METHODS``), so
importing spikeweave does not import them.
"""
