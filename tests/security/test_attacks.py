"""Attacks: they lower an undefended model's accuracy, respect ε and the valid range, never
change the model, work on a load_run Run, and refuse bad input in one line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spikeweave import data
from spikeweave.errors import ConfigError, DataError
from spikeweave.layers import TimeFolded
from spikeweave.neurons import OscillatingLIF
from spikeweave.security.attacks import (
    ATTACKS,
    SURROGATE_GRID,
    adaptive_pgd,
    adaptive_surrogate_pgd,
    backward_surrogate,
    fgsm,
    per_image_worst_case,
    pgd,
    robust_accuracy,
    robust_mask,
    run_attack,
    square,
)
from spikeweave.surrogate import Rectangular, Sigmoid


def _digits(n: int, split: str = "train"):
    ds = data.load("digits", split)
    x, y = ds.tensors
    return x[:n], y[:n]


def _train(seed: int) -> nn.Module:
    """A small ANN on digits, full-batch Adam: ~95% train accuracy in well under a second."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x, y = _digits(1437)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on the shared 2-core CPU intra-op threads spin against each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def nets():
    return _train(0), _train(1)


@pytest.fixture(scope="module")
def test_batch():
    return _digits(200, "test")


def _acc(net, x, y):
    with torch.no_grad():
        return float((net(x).argmax(-1) == y).float().mean())


def test_attacks_lower_accuracy_and_respect_the_budget(nets, test_batch):
    net, other = nets
    x, y = test_batch
    clean = _acc(net, x, y)
    assert clean > 0.85
    eps = 0.15
    results = {}
    for name, kw in {
        "fgsm": {},
        "pgd": {"steps": 20},
        "adaptive": {"steps": 20},
        "transfer": {"source": other, "steps": 20},
        "square": {"queries": 300},
    }.items():
        x_adv = run_attack(name, net, x, y, eps, **kw)
        assert x_adv.shape == x.shape
        assert float((x_adv - x).abs().max()) <= eps + 1e-6  # the max-norm check
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
        results[name] = _acc(net, x_adv, y)
    assert results["pgd"] < 0.5 * clean, results
    assert results["fgsm"] < clean - 0.2, results
    assert results["square"] < clean - 0.2, results
    assert results["transfer"] < clean - 0.1, results
    assert results["pgd"] <= results["fgsm"]  # iterative at least as strong
    # L2: per-sample Euclidean budget
    x2 = pgd(net, x, y, 1.0, norm="l2", steps=20)
    assert float((x2 - x).flatten(1).norm(dim=1).max()) <= 1.0 + 1e-5
    assert _acc(net, x2, y) < clean - 0.2


def test_attacks_never_change_the_model(nets, test_batch):
    net, other = nets
    net.train()  # the attack must not leave it in eval mode either
    net.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = test_batch
    for name in ATTACKS.names():
        kw = {"source": other} if name == "transfer" else {}
        if name == "square":
            kw = {"queries": 20}
        run_attack(name, net, x[:20], y[:20], 0.1, **kw)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())
    assert net.training


def test_more_steps_never_help_the_model(nets, test_batch):
    net, _ = nets
    x, y = test_batch
    a5 = robust_accuracy("pgd", net, x, y, 0.08, steps=5)
    a40 = robust_accuracy("pgd", net, x, y, 0.08, steps=40)
    assert a40 <= a5
    assert robust_accuracy("pgd", net, x, y, 0.0) == pytest.approx(_acc(net, x, y))
    assert robust_accuracy("pgd", net, x, y, 0.5) < 0.05  # ~0 at a large ε


def _snn(**kw):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Unflatten(0, (1, -1)),  # [1, B, 64]: direct encoding with T = 1 ...
        TimeFolded(nn.Linear(64, 32)),
        OscillatingLIF(amplitude=0.4, frequency=0.25, phase=0.0, **kw),
        TimeFolded(nn.Linear(32, 10)),
        Mean0(),
    )


class Mean0(nn.Module):
    def forward(self, z):  # noqa: D102
        return z.mean(0)


def test_adaptive_attack_sees_through_the_defense(test_batch):
    x, y = test_batch
    plain = _snn()
    defended = _snn(fake_form="square", fake_phase=3.0)
    defended.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(5)
    a = pgd(plain, x[:50], y[:50], 0.1, steps=5, generator=g)
    g = torch.Generator().manual_seed(5)
    b = adaptive_pgd(defended, x[:50], y[:50], 0.1, steps=5, generator=g)
    assert torch.equal(a, b)  # the adaptive attacker gets exactly the undefended gradient
    g = torch.Generator().manual_seed(5)
    c = pgd(defended, x[:50], y[:50], 0.1, steps=5, generator=g)
    assert not torch.equal(a, c)  # the non-adaptive one is fooled by the fake backward


def test_square_attack_is_gradient_free(nets, test_batch):
    net, _ = nets
    x, y = test_batch
    with torch.no_grad():  # no autograd at all: it only queries scores
        x_adv = square(net, x[:50], y[:50], 0.2, queries=200)
    assert _acc(net, x_adv, y[:50]) < _acc(net, x[:50], y[:50])


def test_bad_input_gives_one_line_errors(nets, test_batch, tmp_path):
    from spikeweave.security.cli import attack_command

    net, _ = nets
    x, y = test_batch
    with pytest.raises(ConfigError, match="eps must be >= 0") as e:
        fgsm(net, x, y, -0.1)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown attack 'cw'; choose one of fgsm") as e:
        run_attack("cw", net, x, y, 0.1)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="eps must be >= 0"):
        attack_command(tmp_path, "pgd", [0.1, -1.0])
    with pytest.raises(DataError, match="has no checkpoint") as e:
        attack_command(tmp_path, "pgd", [0.1])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown attack"):
        attack_command(tmp_path, "nope", [0.1])
    with pytest.raises(ConfigError, match="needs --source"):
        attack_command(tmp_path, "transfer", [0.1])


@pytest.mark.slow
def test_attack_command_on_a_trained_run(tmp_path):
    from spikeweave.security.cli import attack_command
    from spikeweave.training import TrainConfig, Trainer

    cfg = TrainConfig(
        dataset="digits", model="mlp", steps=2, epochs=3, lr=1e-2, out_dir=str(tmp_path),
        plots=False,
    )  # fmt: skip
    Trainer(cfg, run_dir=tmp_path / "run").fit()
    res = attack_command(tmp_path / "run", "pgd", [0.0, 0.1, 0.3], steps=20, samples=100)
    saved = json.loads((tmp_path / "run" / "attack.json").read_text())
    assert saved["robust_accuracy"] == res["robust_accuracy"]
    assert saved["robust_accuracy"][0] == pytest.approx(saved["clean_accuracy"])
    assert saved["clean_accuracy"] > 0.5
    assert saved["robust_accuracy"][-1] < 0.5 * saved["clean_accuracy"]
    assert (tmp_path / "run" / "attack.png").stat().st_size > 1000
    # the surrogate-choosing attack through the command line: same images and seed, and its
    # first try is this LIF run's PGD itself, so it is never weaker
    from typer.testing import CliRunner

    from spikeweave.cli import app

    args = ["attack", str(tmp_path / "run"), "--attack", "adaptive-surrogate", "--eps", "0.1",
            "--samples", "100", "--steps", "20"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "attack.json").read_text())
    assert saved["attack"] == "adaptive-surrogate"
    assert saved["robust_accuracy"][0] <= res["robust_accuracy"][1]


@pytest.mark.slow
def test_an_oscillating_run_trains_saves_loads_and_is_attacked(tmp_path):
    """--neuron oscillating through the ordinary trainer: the phase seed is in the checkpoint
    and load_run rebuilds the same phases; the adaptive attack works on the Run."""
    from spikeweave.neurons import OscillatingLIF
    from spikeweave.security import oscillating_neurons
    from spikeweave.training import TrainConfig, Trainer, load_run

    cfg = TrainConfig(
        dataset="digits",
        model="mlp",
        neuron="oscillating",
        steps=4,
        epochs=1,
        lr=1e-2,
        out_dir=str(tmp_path),
        plots=False,
    )
    tr = Trainer(cfg, run_dir=tmp_path / "osc")
    tr.fit()
    run = load_run(tmp_path / "osc")
    a, b = oscillating_neurons(tr.model), oscillating_neurons(run)
    assert a and all(isinstance(n, OscillatingLIF) for n in b)
    assert [int(n.phase_seed) for n in a] == [int(n.phase_seed) for n in b]
    x, y = _digits(50, "test")
    assert torch.equal(run.predict(x), run.predict(x))
    acc = robust_accuracy("adaptive", run, x, y, 0.3, steps=20)
    assert acc < robust_accuracy("fgsm", run, x, y, 0.0)


class _Noisy(nn.Module):
    """A classifier with a random forward (noise on its input), like Poisson encoding."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):  # noqa: D102
        return self.net(x + 0.3 * torch.randn_like(x))


def test_eot_averages_gradients_over_random_forwards(nets, test_batch):
    net, _ = nets
    noisy = _Noisy(net)
    x, y = test_batch
    torch.manual_seed(0)
    x1 = adaptive_pgd(noisy, x, y, 0.15, steps=20, eot=1)
    torch.manual_seed(0)
    x8 = adaptive_pgd(noisy, x, y, 0.15, steps=20, eot=8)
    assert float((x8 - x).abs().max()) <= 0.15 + 1e-6
    # judged on the noise-free model, EOT's averaged gradient (and its averaged stopping
    # decision) fools more: one noisy pass ends the attack on a sample by luck
    assert _acc(net, x8, y) < _acc(net, x1, y) - 0.1
    assert _acc(net, x8, y) < _acc(net, x, y) - 0.3


@pytest.mark.parametrize(
    "attack, kwargs, match",
    [("fgsm", dict(steps=5), "--steps does not apply to the fgsm attack"),
     ("fgsm", dict(norm="l2"), "--norm does not apply to the fgsm attack"),
     ("fgsm", dict(source="elsewhere"), "--source does not apply to the fgsm attack"),
     ("square", dict(steps=5), "--steps does not apply to the square attack"),
     ("pgd", dict(source="elsewhere"), "--source does not apply to the pgd attack"),
     ("pgd", dict(steps=0), r"--steps \(PGD steps\) must be in \[1, 2\*\*63 - 1\]"),
     ("fgsm", dict(samples=0), r"--samples \(test images attacked\) must be in \[1"),
     ("fgsm", dict(samples=-1), r"--samples \(test images attacked\) must be in \[1")],
)  # fmt: skip
def test_attack_options_the_attack_would_ignore_or_misread_are_refused_before_loading(
    tmp_path, attack, kwargs, match
):
    from spikeweave.security.cli import attack_command

    with pytest.raises(ConfigError, match=match):
        attack_command(tmp_path / "no-run", attack, [0.1], **kwargs)


@pytest.mark.parametrize(
    "eps, kwargs, match",
    [([0.1, 2.0], {}, r"--eps 2 is outside \[0, 1\], the run's input range"),
     ([1.5], dict(norm="linf"), r"--eps 1.5 is outside \[0, 1\]"),
     ([1.01], {"attack": "fgsm"}, r"--eps 1.01 is outside \[0, 1\]")],
)  # fmt: skip
def test_an_eps_beyond_the_input_range_is_refused_before_loading(tmp_path, eps, kwargs, match):
    from spikeweave.security.cli import attack_command

    attack = kwargs.pop("attack", "pgd")
    with pytest.raises(ConfigError, match=match) as e:
        attack_command(tmp_path / "no-run", attack, eps, **kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_every_attack_and_eps_is_kept_in_attack_json_and_old_files_still_read(tmp_path):
    from spikeweave.security.cli import attack_command, attack_records
    from spikeweave.training import TrainConfig, Trainer

    cfg = TrainConfig(
        dataset="digits", model="mlp", steps=2, epochs=1, out_dir=str(tmp_path), plots=False
    )
    run = tmp_path / "run"
    Trainer(cfg, run_dir=run).fit()
    # an older version's single-record file is read as its records and kept
    old = {"attack": "square", "norm": "linf", "eps": [0.2], "robust_accuracy": [0.25],
           "clean_accuracy": 0.5, "samples": 20, "seed": 0, "split": "test"}  # fmt: skip
    (run / "attack.json").write_text(json.dumps(old))
    assert [(r["attack"], r["eps"]) for r in attack_records(run / "attack.json")] == [
        ("square", 0.2)
    ]
    attack_command(run, "fgsm", [0.0, 0.1], samples=20)
    attack_command(run, "pgd", [2.0], norm="l2", steps=2, samples=20)  # L2 may pass 1
    attack_command(run, "pgd", [0.1], steps=2, samples=20)
    res = attack_command(run, "fgsm", [0.1, 0.2], samples=20)  # 0.1 again: replaced, not doubled
    saved = json.loads((run / "attack.json").read_text())
    assert saved == res and saved["attack"] == "fgsm" and saved["eps"] == [0.1, 0.2]
    kept = sorted((r["attack"], r["eps"]) for r in saved["records"])
    assert kept == [
        ("fgsm", 0.0),
        ("fgsm", 0.1),
        ("fgsm", 0.2),
        ("pgd", 0.1),
        ("pgd", 2.0),
        ("square", 0.2),
    ]
    square = next(r for r in saved["records"] if r["attack"] == "square")
    assert square["robust_accuracy"] == 0.25
    fgsm_01 = next(r for r in saved["records"] if r["attack"] == "fgsm" and r["eps"] == 0.1)
    assert fgsm_01["robust_accuracy"] == res["robust_accuracy"][0]
    # an L2 budget may pass 1, but not the diameter of [0, 1]^64 (digits: 8x8 pixels)
    with pytest.raises(ConfigError, match=r"--eps 9 is outside \[0, 8\], the L2 diameter"):
        attack_command(run, "pgd", [9.0], norm="l2", steps=2, samples=20)
    # a file that is not ours is refused in one line before any attack runs
    (run / "attack.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="is not an attack.json written by spikeweave"):
        attack_command(run, "fgsm", [0.1], samples=20)


# ---------------------------------------------------------------- the attacker's surrogate


@pytest.fixture(scope="module")
def snn_pair():
    """The oscillating SNN of ``_snn`` trained on digits (full batch, surrogate gradients),
    and a copy of it with the fake-gradient defense switched on; own surrogate Sigmoid(3)."""
    plain = _snn(surrogate=Sigmoid(3.0))
    x, y = _digits(1437)
    opt = torch.optim.Adam(plain.parameters(), lr=2e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(plain(x), y).backward()
        opt.step()
    defended = _snn(surrogate=Sigmoid(3.0), fake_form="square", fake_phase=3.0)
    defended.load_state_dict(plain.state_dict())
    return plain, defended


def _neuron(model):
    return next(m for m in model.modules() if isinstance(m, OscillatingLIF))


def test_a_backward_surrogate_changes_the_input_gradient_but_not_the_output(snn_pair):
    plain, _ = snn_pair
    x, y = _digits(40, "test")
    own = _neuron(plain).surrogate

    def out_and_grad():
        xi = x.clone().requires_grad_(True)
        out = plain(xi)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(out, y), xi)
        return out.detach(), g

    out0, g0 = out_and_grad()
    with backward_surrogate(plain, Rectangular(2.0)):
        assert _neuron(plain).surrogate == Rectangular(2.0)
        out1, g1 = out_and_grad()
    assert _neuron(plain).surrogate is own
    assert torch.equal(out0, out1)  # the forward is the Heaviside step whatever the surrogate
    assert not torch.allclose(g0, g1)
    with pytest.raises(RuntimeError, match="boom"), backward_surrogate(plain, Rectangular(2.0)):
        raise RuntimeError("boom")
    assert _neuron(plain).surrogate is own  # restored after an exception too


def test_the_surrogate_choosing_attack_restores_the_models_surrogate(snn_pair):
    _, defended = snn_pair
    x, y = _digits(30, "test")
    neuron = _neuron(defended)
    own, fake_form, true_backward = neuron.surrogate, neuron.fake_form, neuron.true_backward
    x_adv = adaptive_surrogate_pgd(defended, x, y, 0.1, steps=3)
    assert neuron.surrogate is own
    assert (neuron.fake_form, neuron.true_backward) == (fake_form, true_backward)
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_the_surrogate_choosing_attack_is_at_least_as_strong_as_pgd_per_image(snn_pair):
    """Same images and seed: every image plain PGD fools (undefended model) and every image
    the adaptive attack fools (defended model) is fooled by the surrogate-choosing attack,
    which on top breaks images neither breaks (its extra surrogates find them)."""
    plain, defended = snn_pair
    x, y = _digits(200, "test")
    clean = (plain(x).argmax(-1) == y).float().mean()
    assert clean > 0.7
    eps, kw = 0.05, dict(steps=10, seed=3)
    robust = {
        "pgd": robust_mask("pgd", plain, x, y, eps, **kw),
        "surrogate (undefended)": robust_mask("adaptive-surrogate", plain, x, y, eps, **kw),
        "adaptive": robust_mask("adaptive", defended, x, y, eps, **kw),
        "surrogate (defended)": robust_mask("adaptive-surrogate", defended, x, y, eps, **kw),
    }
    assert not (robust["surrogate (undefended)"] & ~robust["pgd"]).any()
    assert not (robust["surrogate (defended)"] & ~robust["adaptive"]).any()
    # the defense changes only the backward, which the adaptive attacks replace: same result
    assert torch.equal(robust["surrogate (defended)"], robust["surrogate (undefended)"])
    assert int(robust["surrogate (defended)"].sum()) < int(robust["adaptive"].sum())
    assert robust_accuracy("adaptive-surrogate", defended, x, y, eps, **kw) == pytest.approx(
        float(robust["surrogate (defended)"].float().mean())
    )


def test_the_surrogate_choosing_attack_refuses_a_bad_surrogate_list(snn_pair):
    plain, _ = snn_pair
    x, y = _digits(5, "test")
    for bad, match in (("atan", "sequence of"), ([("atan", -1.0)], "alpha must be"),
                       ([("nope", 1.0)], "nope"), ([3], "a surrogate to try")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            adaptive_surrogate_pgd(plain, x, y, 0.1, steps=1, surrogates=bad)
    assert len(SURROGATE_GRID) == len(set(SURROGATE_GRID))


def test_the_per_image_worst_case_counts_only_images_every_attack_failed_on():
    a = torch.tensor([True, True, False, False, False])
    b = torch.tensor([False, False, True, False, False])
    # each attack alone leaves 3 and 4 of 5 images; together they break 3 different ones
    assert per_image_worst_case({"a": a, "b": b}) == pytest.approx(2 / 5)
    assert per_image_worst_case({"a": a}) == pytest.approx(3 / 5)
    assert per_image_worst_case({"a": a, "a again": a.clone()}) == pytest.approx(3 / 5)
    assert per_image_worst_case({"a": a, "b": b}) <= min(float((~m).float().mean()) for m in (a, b))


@pytest.mark.parametrize(
    "success, match",
    [({}, "at least one attack"),
     ({"a": torch.zeros(3, dtype=torch.bool), "b": torch.zeros(4, dtype=torch.bool)},
      "same images"),
     ({"a": torch.zeros(3)}, "1-D bool"),
     ({"a": torch.zeros(0, dtype=torch.bool)}, "at least one image")],
)  # fmt: skip
def test_the_per_image_worst_case_refuses_masks_it_cannot_compare(success, match):
    from spikeweave.errors import InputError

    with pytest.raises(InputError, match=match):
        per_image_worst_case(success)
