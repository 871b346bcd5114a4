"""Imports every experiment module so each registers itself."""

from . import klif_vs_lif, na_vs_bptt, noisy_single_step, reset_dependency  # noqa: F401
