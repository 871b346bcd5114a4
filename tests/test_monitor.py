"""Monitors: spikes of every spiking layer recorded in one place, stored bit-packed."""

from __future__ import annotations

import os
import stat

import torch

from spikeweave.learning.na import na_network
from spikeweave.models import MLP
from spikeweave.monitor import Activity, load_activity, record_spikes, save_activity
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
