"""Monitors: spikes of every spiking layer recorded in one place, stored bit-packed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from cli_memory import assert_one_line_error, linux_only, run_spikeweave

from spikeweave.errors import DataError
from spikeweave.learning.na import na_network
from spikeweave.models import MLP
from spikeweave.monitor import (
    Activity,
    activity_warnings,
    load_activity,
    record_spikes,
    save_activity,
)
from spikeweave.neurons import LIF


def test_records_each_spiking_layer_in_network_order():
    torch.manual_seed(0)
    model = MLP((6,), 3, lambda: LIF(), hidden=(8, 5), population=1)
    x = torch.rand(4, 2, 6) * 3
    spikes = record_spikes(model.eval(), x)
    assert list(spikes) == ["spike1", "spike2", "spike_out"]
    assert spikes["spike1"].shape == (4, 2, 8) and spikes["spike1"].dtype == torch.uint8


def test_records_the_spikes_of_na_neurons_whose_forward_returns_currents():
    torch.manual_seed(0)
    net = na_network("4C3-P2-8", (1, 8, 8), 3, init_scale=3.0)
    x = torch.rand(5, 2, 1, 8, 8)
    spikes = record_spikes(net, x)
    assert len(spikes) == 3  # conv, fc, output neurons (sum pooling does not spike)
    assert all(set(s.unique().tolist()) <= {0, 1} for s in spikes.values())
    assert not any("spikes" in vars(m) for m in net.modules())  # the patch is undone


def test_activity_round_trips_bit_packed_with_labels_and_mode_0644(tmp_path):
    gen = torch.Generator().manual_seed(1)
    spikes = {
        "b": (torch.rand(3, 4, 5, 7, generator=gen) < 0.3).to(torch.uint8),
        "a": (torch.rand(3, 4, 11, generator=gen) < 0.5).to(torch.uint8),
    }
    path = save_activity(tmp_path / "act.safetensors", Activity(spikes, [1, 2, 3, 4], [1, 0, 3, 4]))
    back = load_activity(path)
    assert list(back.spikes) == ["b", "a"]
    for name in spikes:
        assert torch.equal(back.spikes[name], spikes[name])
    assert back.labels == [1, 2, 3, 4] and back.predictions == [1, 0, 3, 4]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    raw_bytes = sum(s.numel() for s in spikes.values())
    assert path.stat().st_size < raw_bytes  # 1 bit per spike plus a header


def _bomb_run(run: Path, shape: list[int]) -> Path:
    """A run directory whose ``activity.safetensors`` holds 8 bytes of packed spikes but
    declares ``shape`` in its metadata."""
    from safetensors.torch import save

    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 1.0}\n', encoding="utf-8")
    meta = {"layers": '["l"]', "shapes": json.dumps({"l": shape}), "packed": "bits"}
    blob = save({"l": torch.zeros(8, dtype=torch.uint8)}, metadata=meta)
    (run / "activity.safetensors").write_bytes(blob)
    return run / "activity.safetensors"


def test_a_declared_shape_larger_than_the_packed_spikes_is_refused(tmp_path):
    path = _bomb_run(tmp_path / "run", [100_000, 540, 100])  # 5.4 G bits: 5.4 GB unpacked
    assert path.stat().st_size < 300
    with pytest.raises(
        DataError, match=r"needs 675000000 bytes of packed spikes, the file holds 8"
    ):
        load_activity(path)
    ok = _bomb_run(tmp_path / "ok", [2, 4, 8])  # 64 bits: exactly the 8 bytes stored
    assert load_activity(ok).spikes["l"].shape == (2, 4, 8)
    with pytest.raises(DataError, match="invalid packed spikes"):
        load_activity(_bomb_run(tmp_path / "neg", [-8, -8]))


@pytest.mark.slow
@linux_only
def test_plot_refuses_the_200_byte_activity_bomb_in_one_line(tmp_path):
    path = _bomb_run(tmp_path / "run", [100_000, 540, 100])
    run = run_spikeweave("plot", path.parent)
    assert_one_line_error(run, "activity.safetensors", "packed spikes")
    assert run.peak_mb < 1500  # the CLI alone takes ~350 MB; unpacking took 5.4 GB


def test_activity_warnings_name_silent_and_saturated_layers_only():
    spikes = {
        "quiet": torch.zeros(3, 4, 5, dtype=torch.uint8),
        "busy": torch.ones(3, 4, 5, dtype=torch.uint8),
        "fine": torch.zeros(3, 4, 5, dtype=torch.uint8),
        "nearly_full": torch.ones(3, 4, 5, dtype=torch.uint8),
    }
    spikes["fine"][1, 2, 3] = 1
    spikes["nearly_full"][0, 0, 0] = 0
    lines = activity_warnings(spikes)
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[0].startswith("layer 'quiet' is silent") and "4 test samples x 3 steps" in lines[0]
    assert lines[1].startswith("layer 'busy' is saturated: every neuron spikes at every step")
