import math

import pytest
import torch
from typer.testing import CliRunner

from spikeweave.encoding import direct, poisson
from spikeweave.errors import ConfigError, InputError
from spikeweave.learning.noisy import (
    RESIDUAL_SIGMA,
    NoisyIF,
    NoisySingleStep,
    SingleStepInput,
    converted_config,
    expected_spike,
    multistep_rates,
    noisy_neurons,
    noisy_spike,
    sample_noise,
    set_noisy_mode,
    to_multistep,
)
from spikeweave.models import MLP
from spikeweave.neurons import IF, LIF
from spikeweave.surrogate import Atan
from spikeweave.training import TrainConfig, Trainer, make_method, model_from_config
from spikeweave.training.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def noisy_mlp(seed=0, batch_norm=False, **opts):
    torch.manual_seed(seed)
    model = MLP((12,), 3, lambda: IF(), hidden=(24, 16), population=2, batch_norm=batch_norm)
    return NoisySingleStep(opts).convert(model)


# -- pure functions ----------------------------------------------------------------------


@pytest.mark.parametrize("noise", ["gaussian", "uniform"])
def test_noise_has_the_requested_mean_and_std(noise):
    eps = sample_noise(torch.empty(200_000), noise, 0.4, 0.5, gen())
    assert abs(float(eps.mean()) - 0.5) < 0.01
    assert abs(float(eps.std()) - 0.4) < 0.01
    if noise == "uniform":
        half = math.sqrt(3) * 0.4
        assert float(eps.min()) >= 0.5 - half and float(eps.max()) <= 0.5 + half


@pytest.mark.parametrize("noise", ["gaussian", "uniform"])
def test_expected_spike_is_the_mean_of_noisy_spikes(noise):
    u = torch.linspace(-0.5, 1.5, 41)
    samples = torch.stack(
        [noisy_spike(u, 1.0, 0.3, noise, 0.5, "surrogate", Atan(), gen(i)) for i in range(4000)]
    )
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    expected = expected_spike(u, 1.0, 0.3, noise, 0.5)
    assert torch.allclose(samples.mean(0), expected, atol=0.03)


def test_matched_uniform_noise_gives_the_if_rate_exactly():
    # Residual on [0, θ): the single-step expectation is the IF rate clip(u/θ, 0, 1).
    theta = 2.0
    u = torch.linspace(-1, 3, 81)
    p = expected_spike(u, theta, RESIDUAL_SIGMA * theta, "uniform", theta / 2)
    assert torch.allclose(p, (u / theta).clamp(0, 1), atol=1e-6)


def test_gradients_surrogate_and_expected():
    u = torch.linspace(-0.5, 1.5, 21, requires_grad=True)
    noisy_spike(u, 1.0, 0.3, "gaussian", 0.5, "surrogate", Atan(), gen(3)).sum().backward()
    eps = sample_noise(u.detach(), "gaussian", 0.3, 0.5, gen(3))
    assert torch.allclose(u.grad, Atan().derivative(u.detach() + eps - 1.0))

    u.grad = None
    s = noisy_spike(u, 1.0, 0.3, "gaussian", 0.5, "expected", Atan(), gen(3))
    s.sum().backward()
    assert torch.equal(s.detach(), (u.detach() + eps - 1.0 >= 0).float())
    z = (u.detach() + 0.5 - 1.0) / 0.3
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi) / 0.3
    assert torch.allclose(u.grad, pdf, atol=1e-6)


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="noise"):
        NoisyIF(noise="laplace")
    with pytest.raises(ConfigError, match="sigma"):
        NoisyIF(sigma=-1.0)
    with pytest.raises(ConfigError, match="sigma > 0"):
        NoisyIF(sigma=0.0, grad="expected")
    with pytest.raises(ConfigError, match="noise_mean"):
        NoisyIF(noise_mean=1.0)
    with pytest.raises(ConfigError, match="mode"):
        NoisyIF(mode="x")
    with pytest.raises(ConfigError, match="grad"):
        NoisySingleStep({"grad": "straight"})


# -- the neuron ----------------------------------------------------------------------------


def test_neuron_is_noisy_in_training_and_if_soft_reset_in_eval():
    x = torch.rand(6, 5, 7) * 1.5
    n = NoisyIF(threshold=1.0, sigma=0.3)
    torch.manual_seed(0)
    a = n(x)
    b = n(x)
    assert a.shape == x.shape and not torch.equal(a, b)  # fresh noise each forward
    torch.manual_seed(0)
    assert torch.equal(n(x), a)  # ... from torch's global RNG
    n.eval()
    reference = IF(threshold=1.0, v_reset=0.5, reset="soft")(x)
    assert torch.equal(n(x), reference)
    assert torch.equal(n(x), n(x))
    with pytest.raises(InputError, match="state"):
        n.train()(x, state=torch.zeros(5, 7))


def test_expected_mode_and_streaming_state_in_multistep():
    x = torch.rand(4, 3, 2)
    n = NoisyIF(sigma=0.2, mode="expected")
    assert torch.allclose(n(x), expected_spike(x, 1.0, 0.2, "gaussian", 0.5))
    n.mode = "multistep"
    whole = n(x)
    first, v = n(x[:2], return_state=True)
    second = n(x[2:], state=v)
    assert torch.equal(torch.cat([first, second]), whole)


def test_convert_swaps_neurons_and_trains_at_one_step():
    torch.manual_seed(0)
    model = MLP((12,), 3, lambda: LIF(threshold=1.5), hidden=(24,), population=2)
    model = NoisySingleStep({"sigma": 0.25}).convert(model)
    neurons = noisy_neurons(model)
    assert len(neurons) == 2 and all(m.threshold == 1.5 and m.sigma == 0.25 for m in neurons)
    x = direct(torch.rand(5, 12), 8)
    assert model.train()(x).shape == (1, 5, 3)
    assert model.eval()(x).shape == (8, 5, 3)
    # a non-repeated input (Poisson code) is averaged over steps while training
    hook = SingleStepInput()
    xs = poisson(torch.rand(5, 12), 8, generator=gen())
    (single,) = hook(model.train(), (xs,))
    assert torch.allclose(single, xs.mean(0, keepdim=True))
    assert hook(model.eval(), (xs,)) is None
    with pytest.raises(ConfigError, match="spiking model"):
        NoisySingleStep().convert(MLP((12,), 3, None, hidden=(8,)))


def test_set_noisy_mode():
    model = set_noisy_mode(noisy_mlp(), "expected")
    assert all(m.mode == "expected" for m in noisy_neurons(model))
    with pytest.raises(ConfigError):
        set_noisy_mode(model, "other")


# -- conversion ------------------------------------------------------------------------------


def test_conversion_keeps_the_weights_and_gives_an_ordinary_if_model():
    model = noisy_mlp(batch_norm=True, sigma=0.2, noise_mean=0.4)
    net = to_multistep(model, 16)
    assert net.steps == 16 and not net.training
    a, b = model.state_dict(), net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ifs = [m for m in net.modules() if isinstance(m, IF)]
    assert len(ifs) == 3 and not noisy_neurons(net)
    assert all(m.reset == "soft" and m.threshold == 1.0 and m.v_reset == 0.4 for m in ifs)
    assert len(noisy_neurons(model)) == 3  # the original is untouched
    x = torch.rand(4, 12)
    assert multistep_rates(net, x, 16).shape == (4, 3)
    # same as running the noisy model itself in eval mode
    assert torch.equal(net(direct(x, 16)), model.eval()(direct(x, 16)))
    with pytest.raises(ConfigError, match="NoisyIF"):
        to_multistep(net, 4)
    with pytest.raises(ConfigError, match="positive"):
        to_multistep(model, 0)


@torch.no_grad()
def mean_error_vs_expected(model, x, steps):
    expected = set_noisy_mode(model, "expected").eval()(direct(x, 1))[0]
    net = to_multistep(model, max(steps))
    out = net(direct(x, max(steps)))
    return [float((out[:T].mean(0) - expected).abs().mean()) for T in steps]


@pytest.mark.parametrize("noise", ["uniform", "gaussian"])
def test_converted_rates_approach_the_expected_single_step_outputs(noise):
    # Random weights scaled so that hidden units sit across the threshold.
    model = noisy_mlp(seed=1, noise=noise, sigma=RESIDUAL_SIGMA)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(2.0)
    x = torch.rand(64, 12)
    steps = [2, 8, 32, 128, 512]
    err = mean_error_vs_expected(model, x, steps)
    assert err[-1] < err[0] / 3, err
    assert err[2] < err[0] and err[-1] <= err[2] + 1e-3, err
    if noise == "uniform":  # matched residual noise: the limits agree exactly
        assert err[-1] < 0.005, err
    else:  # Gaussian stands in for the uniform residual: a small plateau remains
        assert err[-1] < 0.04, err


def test_single_layer_expectation_matches_monte_carlo_of_the_noisy_network():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 5)
    x = torch.rand(3, 6)
    n = NoisyIF(sigma=0.3)
    u = lin(x).detach()
    mc = torch.stack([n(u.unsqueeze(0))[0] for _ in range(3000)]).mean(0)
    assert torch.allclose(mc, expected_spike(u, 1.0, 0.3, "gaussian", 0.5), atol=0.04)


# -- trainer integration ----------------------------------------------------------------------


def tiny_config(tmp_path, **kw):
    values = dict(
        dataset="digits",
        model="mlp",
        neuron="if",
        method="noisy",
        steps=4,
        epochs=2,
        batch_size=64,
        population=2,
        lr=5e-3,
        out_dir=str(tmp_path),
    )
    # drawing the PNGs is most of a tiny run's time; a test of the plots passes plots=True
    values.setdefault("plots", False)
    values.update(kw)
    return TrainConfig(**values)


@pytest.mark.slow
def test_trainer_trains_single_step_and_evaluates_the_converted_network(tmp_path):
    trainer = Trainer(tiny_config(tmp_path), progress=False)
    assert isinstance(trainer.method, NoisySingleStep)
    summary = trainer.fit()
    assert summary["test_accuracy"] > 0.6
    assert summary["steps"] == 4
    # the trainer's evaluation is the converted 4-step network's accuracy
    net = to_multistep(trainer.model, 4)
    x, y = trainer.test_set.tensors
    acc = float((multistep_rates(net, x, 4).argmax(-1) == y).float().mean())
    assert acc == pytest.approx(summary["test_accuracy"])
    # and it resumes into the same network
    again = Trainer.resume(trainer.run_dir, progress=False)
    assert again.evaluate()["test_accuracy"] == pytest.approx(summary["test_accuracy"])


@pytest.mark.slow
def test_converted_model_saves_and_rebuilds_from_its_config(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, method_options={"sigma": 0.2, "noise_mean": 0.3})
    trainer = Trainer(cfg, progress=False)
    assert noisy_neurons(trainer.model)[0].noise_mean == 0.3
    trainer.fit()
    net = to_multistep(trainer.model, 6)
    path = save_checkpoint(tmp_path / "converted.safetensors", net.state_dict(), {"T": 6})
    tensors, meta = load_checkpoint(path)
    ccfg = converted_config(cfg, T=meta["T"])
    assert (ccfg.neuron, ccfg.reset, ccfg.v_reset, ccfg.steps) == ("if", "soft", 0.3, 6)
    rebuilt = model_from_config(ccfg)
    rebuilt.load_state_dict(tensors)
    x = trainer.test_set.tensors[0][:50]
    assert torch.equal(multistep_rates(rebuilt.eval(), x, 6), multistep_rates(net, x, 6))


def test_method_options_are_typed_and_unknown_ones_refused():
    method = make_method("noisy", {"sigma": 0.5, "noise": "uniform", "grad": "expected"})
    o = method.options
    assert (o.sigma, o.noise, o.grad) == (0.5, "uniform", "expected")
    with pytest.raises(ConfigError, match="unknown option"):
        make_method("noisy", {"temperature": 1})
    with pytest.raises(ConfigError, match="sigma must be a number"):
        make_method("noisy", {"sigma": "big"})


@pytest.mark.slow
def test_cli_method_noisy(tmp_path):
    from spikeweave.cli import app

    args = ["train", "--dataset", "digits", "--model", "mlp", "--neuron", "if"]
    args += ["--method", "noisy", "-T", "4", "--epochs", "1", "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output


def test_shipped_config_loads_and_configures_the_method():
    from pathlib import Path

    from spikeweave.training import load_config

    path = Path(__file__).parents[2] / "configs" / "methods" / "noisy-mnist5k.toml"
    cfg = TrainConfig.from_dict(load_config(path))
    assert (cfg.method, cfg.dataset, cfg.steps) == ("noisy", "mnist5k", 8)
    o = make_method(cfg.method, cfg.method_options).options
    assert (o.sigma, o.noise, o.grad) == (0.3, "gaussian", "surrogate")
