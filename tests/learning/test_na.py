"""NA gradients: the vectorised backward against a brute-force flip-and-resimulate computation."""

import json
import math

import pytest
import torch
from torch import nn

from spikeweave.errors import ConfigError
from spikeweave.layers import TimeFolded
from spikeweave.learning.na import (
    InputNormalize,
    InputSynapse,
    NANetwork,
    NANeuron,
    SumPool2d,
    convert_to_na,
    kernel_loss,
    later_weight,
    na_dynamics,
    na_network,
    psc,
)
from spikeweave.monitor import load_activity
from spikeweave.training import TrainConfig, Trainer, make_method

TAU_M, TAU_S, THETA = 5.0, 2.0, 1.0


# -- an independent, scalar reference -------------------------------------------------------
def ref_neuron(current, flip_at=None, tau_m=TAU_M, theta=THETA):
    """Plain-Python NA neuron on a list of currents; optionally the neighbour flipping at
    ``flip_at`` (membrane restarts at θ if a spike is removed, at 0 if one is added)."""
    lam = 1 - 1 / tau_m
    carry, spikes, mem = 0.0, [], []
    for t, i in enumerate(current):
        u = lam * carry + i
        s = 1.0 if u >= theta else 0.0
        if t == flip_at:
            s = 1.0 - s
            carry = theta if s == 0.0 else 0.0
        else:
            carry = u * (1 - s)
        spikes.append(s)
        mem.append(u)
    return spikes, mem


def ref_psc(spikes, tau_s=TAU_S):
    a, out = 0.0, []
    for s in spikes:
        a = (1 - 1 / tau_s) * a + s / tau_s
        out.append(a)
    return out


def distance(u, s, min_distance, form):
    if form == "paper":
        mag = max(abs(THETA - u), min_distance)
        return -mag if s else mag
    if form == "later":  # the authors' later weighting, signed like the distance
        w = 0.2 / ((u - THETA) ** 2 + 0.2)
        return -w if s else w
    mag = max(abs(THETA - u), 1e-12)
    d = -mag if s else mag
    return min(max(d**-3, -5.0), 5.0)


def run_layers(blocks, x):
    """Forward through ``[(stateless, NANeuron), ...]``; returns currents (with grads kept) and
    each layer's output (PSC, or spikes for the last)."""
    currents, outs, h = [], [], x
    for stateless, neuron in blocks:
        cur = stateless(h)
        cur.retain_grad()
        h = neuron(cur)
        currents.append(cur)
        outs.append(h)
    return currents, outs


def brute_force_deltas(blocks, currents, labels, form="paper", min_distance=0.2):
    """δ of every neuron and step by flipping it and re-simulating, top layer first.

    Output layer: the first-order change of the loss ``Σ_t ∂L/∂a[t]·Δa[t]`` (the loss is a
    function of the output PSC, ``∂L/∂a = (a - a_d)/B``). Hidden layer ``l``: the flip's PSC
    change is pushed through the next stateless map (``f(a + Δa) - f(a)``) and weighted with
    the next layer's brute-force δ. Divided by the (guarded) distance ``θ - u[k]``.
    """
    deltas = [None] * len(blocks)
    for li in reversed(range(len(blocks))):
        cur = currents[li].detach()
        T, B = cur.shape[:2]
        flat = cur.reshape(T, B, -1)
        N = flat.shape[2]
        out = torch.zeros_like(flat)
        if li == len(blocks) - 1:
            spikes_out = torch.tensor(
                [[ref_neuron(flat[:, b, j].tolist())[0] for j in range(N)] for b in range(B)]
            ).permute(2, 0, 1)
            a = psc(spikes_out.to(flat), TAU_S)
            a_d = psc(nn.functional.one_hot(labels, N).to(flat).unsqueeze(0).expand(T, B, N), TAU_S)
            dl_da = (a - a_d) / B
        else:
            # PSC of this layer (reference) and the next stateless map
            a_ref = torch.zeros_like(flat)
            for b in range(B):
                for j in range(N):
                    a_ref[:, b, j] = torch.tensor(ref_psc(ref_neuron(flat[:, b, j].tolist())[0]))
            a_ref = a_ref.reshape(cur.shape)
            nxt = blocks[li + 1][0]
            with torch.no_grad():
                base = nxt(a_ref)
        for b in range(B):
            for j in range(N):
                seq = flat[:, b, j].tolist()
                s0, u0 = ref_neuron(seq)
                a0 = ref_psc(s0)
                for k in range(T):
                    a_k = ref_psc(ref_neuron(seq, flip_at=k)[0])
                    da = torch.tensor([p - q for p, q in zip(a_k, a0, strict=True)]).to(flat)
                    if li == len(blocks) - 1:
                        n = float((dl_da[:, b, j] * da).sum())
                    else:
                        pert = torch.zeros_like(flat)
                        pert[:, b, j] = da
                        with torch.no_grad():
                            d_next = nxt(a_ref + pert.reshape(cur.shape)) - base
                        n = float((deltas[li + 1] * d_next).sum())
                    w = distance(u0[k], s0[k], min_distance, form)
                    out[k, b, j] = n / w if form == "paper" else n * w
        deltas[li] = out.reshape(cur.shape)
        if form in ("code", "later") and li < len(blocks) - 1:
            m_out = float(deltas[-1].abs().mean())
            m_l = float(deltas[li].abs().mean())
            if m_l > 0:
                deltas[li] = deltas[li] * (1.2 * math.log(m_out / m_l + 1.02))
    return deltas


def blocks_of(net):
    """``[(stateless maps before a neuron, the neuron), ...]``: the input synapse and the
    non-spiking sum pooling join the map that follows them."""
    blocks, pending = [], []
    for m in net:
        if isinstance(m, NANeuron):
            blocks.append((nn.Sequential(*pending), m))
            pending = []
        else:
            pending.append(m)
    assert not pending
    return blocks


def mlp_blocks(form="paper", min_distance=0.2, **kw):
    torch.manual_seed(1)
    net = NANetwork(
        "7-5",
        (6,),
        3,
        tau_m=TAU_M,
        tau_s=TAU_S,
        form=form,
        min_distance=min_distance,
        init_scale=2.0,
        **kw,
    ).double()
    return blocks_of(net)


def conv_blocks(**kw):
    torch.manual_seed(1)
    net = NANetwork("2C3-P2", (1, 6, 6), 3, init_scale=4.0, tau_m=TAU_M, tau_s=TAU_S, **kw).double()
    return blocks_of(net)


def check_against_brute_force(blocks, x, labels, form="paper", min_distance=0.2):
    currents, outs = run_layers(blocks, x)
    kernel_loss(outs[-1], labels, TAU_S).backward()
    expected = brute_force_deltas(blocks, currents, labels, form, min_distance)
    fired = [float(psc_or_s.detach().abs().sum()) for psc_or_s in outs]
    assert all(f > 0 for f in fired), "every layer should spike for a meaningful test"
    for got, want in zip(currents, expected, strict=True):
        assert float(want.abs().sum()) > 0
        torch.testing.assert_close(got.grad, want, rtol=1e-9, atol=1e-12)


# -- the key test ----------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["paper", "code", "later"])
def test_na_deltas_match_brute_force_flip_and_resimulate_mlp(form):
    blocks = mlp_blocks(form)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 6, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1])
    check_against_brute_force(blocks, x, labels, form)


@pytest.mark.parametrize("pool", ["sum", "spiking"])
def test_na_deltas_match_brute_force_conv_and_both_poolings(pool):
    blocks = conv_blocks(pool=pool)
    assert len(blocks) == (3 if pool == "spiking" else 2)  # a pooling neuron only if spiking
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 2, 1, 6, 6, generator=g, dtype=torch.float64)
    check_against_brute_force(blocks, x, torch.tensor([1, 0]))


def test_later_weight_is_one_at_threshold_and_signed_by_the_spike():
    u = torch.tensor([1.0, 1.0, 0.0, 2.0])
    s = torch.tensor([0.0, 1.0, 0.0, 1.0])
    w = later_weight(u, s, 1.0, 0.2)
    torch.testing.assert_close(w, torch.tensor([1.0, -1.0, 0.2 / 1.2, -0.2 / 1.2]))


def test_authors_network_filters_the_input_pools_without_spiking_and_has_no_biases():
    torch.manual_seed(0)
    net = NANetwork("3C3-P2-6", (1, 8, 8), 3, input_mean=0.5, input_std=0.25)
    assert isinstance(net[0], InputNormalize) and isinstance(net[1], InputSynapse)
    pool_at = next(
        i
        for i, m in enumerate(net)
        if isinstance(m, TimeFolded) and isinstance(m.module, SumPool2d)
    )
    assert not isinstance(net[pool_at + 1], NANeuron)  # the pooled PSCs go straight on
    assert all(p.dim() > 1 for p in net.parameters())  # no biases
    # the input layer sees the PSC of the normalised input
    x = torch.rand(4, 2, 1, 8, 8)
    torch.testing.assert_close(net[1](net[0](x)), psc((x - 0.5) / 0.25, 2.0))
    # sum pooling: 1.1 × the summed PSCs of each 2×2 window
    a = torch.rand(6, 3, 4, 4)
    torch.testing.assert_close(SumPool2d(2, 1.1)(a)[..., 0, 0], 1.1 * a[..., :2, :2].sum((-1, -2)))


def test_authors_init_kaiming_normal_linear_default_conv():
    torch.manual_seed(0)
    net = NANetwork("8C3-400", (1, 10, 10), 10)
    conv = next(
        m.module for m in net if isinstance(m, TimeFolded) and isinstance(m.module, nn.Conv2d)
    )
    lin = [m for m in net.modules() if isinstance(m, nn.Linear)][0]
    # kaiming-normal (fan-in, gain √2): std √(2/fan_in); PyTorch's conv default is uniform
    # with bound 1/√fan_in
    assert float(lin.weight.detach().std()) == pytest.approx(
        math.sqrt(2 / lin.in_features), rel=0.05
    )
    assert float(conv.weight.detach().abs().max()) <= 1 / math.sqrt(9) + 1e-6
    default = NANetwork("8C3-400", (1, 10, 10), 10, init="default")
    lin_d = [m for m in default.modules() if isinstance(m, nn.Linear)][0]
    assert float(lin_d.weight.detach().abs().max()) <= 1 / math.sqrt(lin_d.in_features) + 1e-6


def test_na_weight_gradient_is_delta_times_presynaptic_psc():
    blocks = mlp_blocks()
    x = torch.rand(5, 2, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    currents, outs = run_layers(blocks, x)
    kernel_loss(outs[-1], torch.tensor([1, 2])).backward()
    lin = blocks[-1][0][-1].module
    want = torch.einsum("tbo,tbi->oi", currents[-1].grad, outs[-2].detach())
    torch.testing.assert_close(lin.weight.grad, want)


# -- pieces ------------------------------------------------------------------------------------
def test_dynamics_and_psc_match_the_scalar_reference():
    cur = torch.rand(7, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    spikes, mem = na_dynamics(cur, TAU_M, THETA)
    for j in range(4):
        s, u = ref_neuron(cur[:, j].tolist())
        assert spikes[:, j].tolist() == s
        torch.testing.assert_close(mem[:, j], torch.tensor(u, dtype=torch.float64))
        torch.testing.assert_close(
            psc(spikes, TAU_S)[:, j], torch.tensor(ref_psc(s), dtype=torch.float64)
        )


def test_surrogate_estimator_has_the_same_forward():
    torch.manual_seed(0)
    cur = torch.randn(6, 3, 10) + 0.8
    a = NANeuron()(cur)
    b = NANeuron(estimator="surrogate")(cur)
    assert torch.equal(a, b)


def test_kernel_loss_is_zero_for_the_desired_train():
    y = torch.tensor([2, 0])
    out = torch.zeros(5, 2, 3)
    out[:, 0, 2] = 1
    out[:, 1, 0] = 1
    assert float(kernel_loss(out, y)) == 0.0
    out[0, 1, 1] = 1  # one wrong spike: ½·Σ_t a[t]² of its PSC
    expected = 0.5 * sum(v**2 for v in ref_psc([1, 0, 0, 0, 0])) / 2
    assert float(kernel_loss(out, y)) == pytest.approx(expected)


def test_paper_networks_have_the_paper_shapes():
    mnist = na_network("na-mnist", (1, 28, 28), 10)
    convs = [m.module for m in mnist if isinstance(m, TimeFolded)]
    assert [c.out_channels for c in convs if isinstance(c, nn.Conv2d)] == [15, 40]
    assert sum(isinstance(c, SumPool2d) for c in convs) == 2
    assert mnist[7].module[1].in_features == 640 and mnist[-2].module.out_features == 10
    assert sum(isinstance(m, NANeuron) for m in mnist) == 4  # pooling does not spike
    out = mnist(torch.rand(5, 2, 1, 28, 28))
    assert out.shape == (5, 2, 10) and set(out.unique().tolist()) <= {0.0, 1.0}
    cifar = na_network("na-cifar10", (3, 32, 32), 10)
    convs = [
        m.module for m in cifar if isinstance(m.module if hasattr(m, "module") else m, nn.Conv2d)
    ]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    with pytest.raises(ConfigError, match="cannot read layer"):
        NANetwork("15X5", (1, 28, 28), 10)


def test_convert_to_na_replaces_trainer_neurons():
    cfg = TrainConfig(dataset="digits", model="mlp", population=2)
    from spikeweave.training import model_from_config

    model = convert_to_na(model_from_config(cfg))
    neurons = [m for m in model.modules() if isinstance(m, NANeuron)]
    assert len(neurons) == 3 and neurons[-1].output == "spikes"
    assert all(n.options.tau_m == cfg.tau for n in neurons)
    out = model(torch.rand(3, 4, 1, 8, 8))
    assert out.shape == (3, 4, 10)


def test_method_options_build_the_paper_network_and_refuse_unknown_keys():
    method = make_method("na", {"network": "na-mnist", "form": "code"})
    assert method.options.form == "code"
    cfg = TrainConfig(dataset="mnist5k", method="na", method_options={"network": "na-mnist"})
    net = Trainer(cfg, progress=False).model
    assert isinstance(net, NANetwork) and net.spec == "15C5-P2-40C5-P2-300"
    with pytest.raises(ConfigError, match="unknown option"):
        make_method("na", {"nope": 1})
    with pytest.raises(ConfigError, match="form must be one of"):
        make_method("na", {"form": "other"})
    later = make_method("na", {"network": "4C3-P2-8", "form": "later", "later_width": 0.3})
    cfg = TrainConfig(dataset="digits", method="na", steps=2)
    neurons = [
        m
        for m in Trainer(cfg, method=later, progress=False).model.modules()
        if isinstance(m, NANeuron)
    ]
    assert all(n.options.form == "later" and n.options.later_width == 0.3 for n in neurons)
    with pytest.raises(ConfigError, match="pool must be one of"):
        make_method("na", {"pool": "max"})


@pytest.mark.slow
def test_trainer_runs_na_method_and_records_its_named_loss_and_activity(tmp_path):
    cfg = TrainConfig(
        dataset="digits",
        model="mlp",
        method="na",
        steps=3,
        epochs=1,
        batch_size=64,
        population=1,
        tau=5.0,
        lr=1e-2,
        out_dir=str(tmp_path),
    )
    trainer = Trainer(cfg, progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.fit()
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert all(p.abs().max() <= 4.0 for p in trainer.model.parameters() if p.dim() > 1)
    assert summary["test_accuracy"] > 0.5  # chance is 0.1
    # the run says which loss it trained on, for train and test alike, and records spikes
    assert summary["loss_name"].startswith("PSC kernel loss")
    lines = (trainer.run_dir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert all(r["loss_name"] == summary["loss_name"] for r in rows)
    activity = load_activity(trainer.run_dir / "activity.safetensors")
    assert len(activity.spikes) == 3 and all(s.shape[0] == 3 for s in activity.spikes.values())
    assert set(summary["firing_rates"]) == set(activity.spikes)
    for png in ("training_curves.png", "spike_raster.png", "firing_rates.png"):
        assert (trainer.run_dir / png).is_file()


@pytest.mark.slow
def test_cli_trains_with_method_na(tmp_path):
    from typer.testing import CliRunner

    from spikeweave.cli import app

    args = ["train", "--method", "na", "--dataset", "digits", "--model", "mlp", "-T", "2"]
    args += ["--epochs", "1", "--tau", "5", "--no-progress", "--out-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output


def test_surrogate_width_comes_from_the_config_unless_the_method_sets_it():
    base = TrainConfig(dataset="digits", method="na", steps=2, alpha=4.0)
    method = make_method("na", {"network": "4C3-P2-8", "estimator": "surrogate"})
    neurons = [m for m in Trainer(base, method=method, progress=False).model.modules()
               if isinstance(m, NANeuron)]  # fmt: skip
    assert all(n.surrogate.alpha == 4.0 for n in neurons)
    own = make_method("na", {"network": "4C3-P2-8", "estimator": "surrogate", "alpha": 1.0})
    neurons = [m for m in Trainer(base, method=own, progress=False).model.modules()
               if isinstance(m, NANeuron)]  # fmt: skip
    assert all(n.surrogate.alpha == 1.0 for n in neurons)
