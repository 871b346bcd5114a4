"""The attack and backdoor figures read well: checked on the Figure objects
(tests/figure_checks.py), not on pixels."""

from __future__ import annotations

import torch
from figure_checks import assert_readable, saved_figures

from spikeweave.security.backdoor_cli import plot_trigger_grid
from spikeweave.security.cli import plot_accuracy_vs_eps


def test_accuracy_vs_eps_labels_eps_and_percent_and_keys_each_attack(tmp_path):
    curves = {
        "pgd (linf), 5 steps": ([0.0, 0.1], [0.9, 0.3]),
        "fgsm (linf)": ([0.0, 0.1], [0.9, 0.5]),
    }
    with saved_figures() as figures:
        plot_accuracy_vs_eps(curves, tmp_path / "attack.png", "run: robust accuracy vs ε")
    assert_readable(figures, expected=1)
    ax = figures[0].axes[0]
    assert "ε" in ax.get_xlabel() and "(%)" in ax.get_ylabel()
    assert ax.get_ylim()[0] >= -2 and ax.get_ylim()[1] <= 102


def test_trigger_grid_heading_says_how_many_triggers_of_what_size(tmp_path):
    triggers = torch.rand(20, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    with saved_figures() as figures:
        plot_trigger_grid(triggers, tmp_path / "t.png", "MESA triggers, β = 0.5, class 0")
    assert_readable(figures, expected=1)
    assert "20 sampled triggers, 3x3 pixels" in figures[0]._suptitle.get_text()
