"""activation_memory: every mode trains exactly as ``save`` does (loss, gradients, BatchNorm
statistics, dropout and Poisson draws), keeps what it says it keeps, is recorded with the run
and refused where the network cannot honour it."""

from __future__ import annotations

import json

import pytest
import torch
from cli_run import run_main

import spikeweave.functional.memory as memory
from spikeweave.errors import ConfigError
from spikeweave.neurons import SpikingNeuron
from spikeweave.training import TrainConfig, Trainer, assemble
from spikeweave.training.activation import (
    ActivationMemory,
    check_activation_memory,
    plan_blocks,
    with_activation_memory,
)
from spikeweave.training.evaluation import encode_batch

MODES = ("pack", "checkpoint", "checkpoint+pack")


def config(tmp_path, **kw) -> TrainConfig:
    values = dict(
        dataset="digits", model="mlp", steps=8, epochs=1, batch_size=16, population=2,
        out_dir=str(tmp_path), encoder="poisson", dropout=0.2, lr=5e-3,
        plots=False,  # drawing the PNGs is most of a tiny run's time; no test here reads them
    )  # fmt: skip
    values.update(kw)
    return TrainConfig(**values)


def one_step(cfg: TrainConfig, mode: str):
    """Loss, parameter gradients and buffers after one forward/backward of ``cfg``'s model
    under ``mode`` (same seed, so the same weights, Poisson spikes and dropout masks)."""
    parts = assemble(cfg, with_data=False)
    model = parts.model.train()
    net = with_activation_memory(model, mode)
    x = torch.rand(8, *parts.task.spec.input_shape, generator=torch.Generator().manual_seed(3))
    y = torch.arange(8) % parts.task.spec.num_outputs
    torch.manual_seed(11)
    loss = parts.method.loss(parts.task)(net(encode_batch(cfg, parts.task.spec, x)), y)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    return loss.detach(), grads, {n: b.clone() for n, b in model.named_buffers()}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("neuron", ["lif", "klif"])
@pytest.mark.parametrize("model", ["convnet", "mlp"])
def test_each_mode_gives_the_loss_gradients_and_statistics_of_save_bit_for_bit(
    tmp_path, model, neuron, reset, mode
):
    # Bit for bit (torch.equal): checkpoint reruns the same operations on the same values in
    # the same order, and packed spikes unpack to the same 0/1, so nothing may differ at all.
    cfg = config(tmp_path, model=model, neuron=neuron, reset=reset)
    if model == "convnet":
        cfg.hidden = [32]
    ref_loss, ref_grads, ref_buffers = one_step(cfg, "save")
    loss, grads, buffers = one_step(cfg, mode)
    assert torch.equal(loss, ref_loss)
    assert grads.keys() == ref_grads.keys()
    for name, g in ref_grads.items():
        assert g is not None and torch.equal(grads[name], g), name
    for name, b in ref_buffers.items():  # BatchNorm running statistics moved exactly once
        assert torch.equal(buffers[name], b), name


@pytest.mark.parametrize("mode", MODES)
def test_learnable_width_lif_trains_in_each_mode_as_in_save_and_packs_its_spikes(
    tmp_path, monkeypatch, mode
):
    """The learnable-width LIF (on the compiled kernel) under every mode: the loss and every
    gradient, its width's included, bit for bit those of ``save``; its spikes packed."""
    cfg = config(tmp_path, neuron="lif-width", dropout=0.0)
    ref_loss, ref_grads, _ = one_step(cfg, "save")
    loss, grads, _ = one_step(cfg, mode)
    assert torch.equal(loss, ref_loss)
    assert any(name.endswith("log_width") for name in ref_grads)
    for name, g in ref_grads.items():
        assert g is not None and torch.equal(grads[name], g), name
    packed = packed_spikes(tmp_path, monkeypatch, (mode,), neuron="lif-width", dropout=0.0)
    assert packed[mode] == (0 if mode == "checkpoint" else 8 * 8 * (256 + 128))


def packed_spikes(tmp_path, monkeypatch, modes, **kw) -> dict[str, int]:
    """Spikes packed to bits in one step of each mode."""
    packed: dict[str, int] = {}
    real = memory.pack_bits
    for mode in modes:
        packed[mode] = 0

        def counting(s, mode=mode):
            packed[mode] += s.numel()
            return real(s)

        monkeypatch.setattr(memory, "pack_bits", counting)
        one_step(config(tmp_path, **kw), mode)
    return packed


def test_pack_modes_store_spikes_at_one_bit_and_the_others_do_not(tmp_path, monkeypatch):
    packed = packed_spikes(tmp_path, monkeypatch, ("save", *MODES), dropout=0.0)
    assert packed["save"] == 0 and packed["checkpoint"] == 0
    # the spikes of both hidden layers (8 steps x 8 samples x 256 and x 128), read by the next
    # linear layer (pack) or kept as the next block's input (checkpoint+pack)
    assert packed["pack"] == packed["checkpoint+pack"] == 8 * 8 * (256 + 128)


def test_dropout_after_a_neuron_hides_its_spikes_from_pack_but_not_from_blocks(
    tmp_path, monkeypatch
):
    # the linear layer then saves dropout's scaled output, which is no spike tensor; a block
    # input is the neuron's output itself
    packed = packed_spikes(tmp_path, monkeypatch, ("pack", "checkpoint+pack"), dropout=0.2)
    assert packed["pack"] == 0
    assert packed["checkpoint+pack"] == 8 * 8 * (256 + 128)


@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_modes_run_each_neuron_again_in_backward(tmp_path, mode):
    parts = assemble(config(tmp_path, model="convnet", hidden=[32]), with_data=False)
    calls = []
    neurons = [m for m in parts.model.modules() if isinstance(m, SpikingNeuron)]
    for n in neurons:  # a pre-hook: the recomputation may stop inside the neuron's forward
        n.register_forward_pre_hook(lambda m, i: calls.append(m))
    x = torch.rand(4, 4, 1, 8, 8)
    ActivationMemory(parts.model, mode)(x).sum().backward()
    expected = 2 if mode.startswith("checkpoint") else 1
    assert len(calls) == expected * len(neurons)


def test_inference_runs_the_bare_network_once(tmp_path):
    parts = assemble(config(tmp_path, model="convnet", hidden=[32]), with_data=False)
    calls = []
    parts.model.spike1.register_forward_pre_hook(lambda m, i: calls.append(m))
    x = torch.rand(4, 4, 1, 8, 8)
    with torch.no_grad():
        out = ActivationMemory(parts.model, "checkpoint+pack")(x)
        assert len(calls) == 1
        assert torch.equal(out, parts.model(x))


def test_blocks_end_at_each_neuron_and_the_readout_stays_outside(tmp_path):
    model = assemble(config(tmp_path, model="convnet", hidden=[32]), with_data=False).model
    names = list(dict(model.named_children()))
    blocks = [[names[i] for i in b] for b in plan_blocks(model)]
    assert blocks == [
        ["conv1", "spike1"],
        ["pool1", "conv2", "spike2"],
        ["pool2", "flatten", "fc1", "spike3", ],
        ["dropout", "fc_out", "spike_out"],
    ]  # fmt: skip
    assert names[-1] == "readout"


@pytest.mark.slow
def test_a_run_trained_with_checkpoint_and_pack_ends_with_the_weights_of_save(tmp_path):
    cfg = config(tmp_path, steps=4, batch_size=32, train_size=256)
    save = Trainer(cfg, run_dir=tmp_path / "save", progress=False)
    save.fit()
    cfg.activation_memory = "checkpoint+pack"
    other = Trainer(cfg, run_dir=tmp_path / "ckpt", progress=False)
    other.fit()
    for (name, a), b in zip(
        save.model.state_dict().items(), other.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_the_mode_is_recorded_with_the_run_and_resume_keeps_it(tmp_path):
    cfg = config(tmp_path, steps=2, batch_size=64, train_size=128, activation_memory="checkpoint")
    Trainer(cfg, run_dir=tmp_path / "r", progress=False).fit()
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())
    assert recorded["activation_memory"] == "checkpoint"
    resumed = Trainer.resume(tmp_path / "r", progress=False, epochs=2)
    assert resumed.config.activation_memory == "checkpoint"
    assert isinstance(resumed._net, ActivationMemory) and resumed._net.mode == "checkpoint"
    # the checkpoint holds the bare network's names, whatever the mode
    assert all(not k.startswith("net.") for k in resumed.model.state_dict())


@pytest.mark.parametrize("mode", MODES)
def test_a_network_without_spikeweave_neurons_is_refused_in_one_line(tmp_path, mode):
    with pytest.raises(ConfigError, match="needs spikeweave spiking neurons.*'bioleaf'"):
        # the default lr: BioLeaF refuses one it would not read
        cfg = config(tmp_path, method="bioleaf", dropout=0.0, population=10, lr=2e-3)
        cfg.activation_memory = mode
        assemble(cfg, with_data=False)
    with pytest.raises(ConfigError, match="needs spikeweave spiking neurons"):
        assemble(config(tmp_path, model="ann", activation_memory=mode), with_data=False)


def test_checkpoint_of_a_network_that_is_no_sequence_of_blocks_is_refused(tmp_path):
    neuron = assemble(config(tmp_path), with_data=False).model.spike1
    with pytest.raises(ConfigError, match="sequential network of layer blocks"):
        check_activation_memory(torch.nn.ModuleList([neuron]), "checkpoint", "custom")
    check_activation_memory(torch.nn.ModuleList([neuron]), "pack", "custom")  # pack applies


def test_unknown_modes_and_checkpoint_with_sync_batchnorm_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown activation_memory 'bits'"):
        config(tmp_path, activation_memory="bits").validate()
    with pytest.raises(ConfigError, match="sync_batchnorm"):
        config(tmp_path, activation_memory="checkpoint", sync_batchnorm=True).validate()


def test_cli_train_takes_the_option_and_refuses_a_bad_value_in_one_line(tmp_path):
    code, _, err = run_main(
        "train", "--dataset", "digits", "--model", "mlp", "--activation-memory", "bits",
        "--no-progress", "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 2 and err.strip().startswith("error: unknown activation_memory 'bits'")
    assert len(err.strip().splitlines()) == 1
