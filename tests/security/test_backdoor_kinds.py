"""Blended and WaNet triggers beside BadNets: each kind poisons exactly the fraction, relabels,
is seeded and stays in [0, 1]; the metrics (ASR, R-Acc, DER) on hand-made cases; runs without a
recorded kind are badnets; bad options fail in one line."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from spikeweave import cli, data
from spikeweave.errors import ConfigError
from spikeweave.options import build_options
from spikeweave.security.backdoor import (
    POISON_KINDS,
    BackdoorOptions,
    PoisonedDataset,
    Trigger,
    _BackdoorTransform,
    attack_success_rate,
    defense_effectiveness_rating,
    poison,
    triggered_metrics,
)
from spikeweave.security.backdoor_cli import backdoor_metrics, der_of
from spikeweave.training import TrainConfig, Trainer, load_run


def _digits(n: int = 200):
    x, y = data.load("digits", "train").tensors
    return x[:n], y[:n]


def _attack(kind: str, seed: int = 0, shape=(1, 8, 8), **extra) -> Trigger:
    return BackdoorOptions(fraction=0.1, kind=kind, seed=seed, **extra).make_attack(shape)


@pytest.mark.parametrize("kind", POISON_KINDS)
@pytest.mark.parametrize("fraction", [0.013, 0.1, 0.5])
def test_each_kind_poisons_exactly_the_fraction_relabels_and_stays_in_range(kind, fraction):
    x, y = _digits()
    attack = _attack(kind, seed=3)
    xp, yp, mask = poison(x, y, attack, target=7, fraction=fraction, seed=3)
    assert int(mask.sum()) == int(fraction * len(x) + 0.5)
    assert bool((yp[mask] == 7).all())
    keep = ~mask
    assert xp[keep].numpy().tobytes() == x[keep].numpy().tobytes()
    assert yp[keep].numpy().tobytes() == y[keep].numpy().tobytes()
    assert float(xp.min()) >= 0.0 and float(xp.max()) <= 1.0
    again = poison(x, y, _attack(kind, seed=3), target=7, fraction=fraction, seed=3)
    assert all(torch.equal(a, b) for a, b in zip((xp, yp, mask), again, strict=True))
    other = poison(x, y, _attack(kind, seed=4), target=7, fraction=fraction, seed=4)
    assert not torch.equal(other[0], xp)  # another seed: other images and/or another trigger


@pytest.mark.parametrize("kind", ["blended", "wanet"])
def test_blended_and_wanet_change_every_image_visibly_but_boundedly(kind):
    x, _ = _digits()
    attack = _attack(kind)
    change = (attack.apply(x) - x).abs().flatten(1)
    assert float(change.mean(1).min()) > 0.01  # every image visibly changed
    assert float(change.mean()) < 0.1  # ... but it stays the same image
    if kind == "blended":  # |(1 - a)x + a p - x| = a |p - x| <= a
        assert float(change.max()) <= 0.1 + 1e-6
    assert torch.equal(_attack(kind).apply(x), attack.apply(x))  # fixed from the seed
    assert not torch.equal(_attack(kind, seed=1).apply(x), attack.apply(x))


def test_wanet_identity_strength_limit_and_noise_mode():
    x, y = _digits(100)
    weak = _attack("wanet", warp_strength=1e-6).apply(x)
    assert torch.allclose(weak, x, atol=1e-4)  # the grid is the identity plus the warp
    noisy = _attack("wanet", warp_noise=2.0)
    ds = PoisonedDataset(torch.utils.data.TensorDataset(x, y), noisy, 2, 0.1, seed=5)
    assert int(ds.mask.sum()) == 10 and int(ds.noise_mask.sum()) == 20
    assert not bool((ds.mask & ds.noise_mask).any())
    xp, yp, mask = poison(x, y, noisy, 2, 0.1, seed=5)
    got = [ds[i] for i in range(len(ds))]
    assert torch.allclose(torch.stack([g[0] for g in got]), xp)
    assert torch.equal(torch.stack([torch.as_tensor(g[1]) for g in got]), yp)
    assert torch.equal(yp[ds.noise_mask], y[ds.noise_mask])  # noise images keep their labels
    assert not torch.equal(xp[ds.noise_mask], x[ds.noise_mask])


@pytest.mark.parametrize("kind", POISON_KINDS)
def test_poisoned_dataset_matches_poison_for_every_kind(kind):
    x, y = _digits(60)
    attack = _attack(kind, seed=2)
    ds = PoisonedDataset(torch.utils.data.TensorDataset(x, y), attack, 1, 0.25, seed=9)
    xp, yp, mask = poison(x, y, attack, 1, 0.25, seed=9)
    assert torch.equal(ds.mask, mask)
    got = [ds[i] for i in range(len(ds))]
    assert torch.equal(torch.stack([g[0] for g in got]), xp)
    assert torch.equal(torch.stack([g[1] for g in got]), yp)


class _Lookup(torch.nn.Module):
    """Image i (pixel (5, 5) = i / 10) gets ``clean[i]``, or ``trig[i]`` when the 2×2 patch of
    ones sits at (0, 0)."""

    def __init__(self, clean, trig):
        super().__init__()
        self.clean, self.trig = torch.tensor(clean), torch.tensor(trig)

    def forward(self, z):
        i = (z[:, 0, 5, 5] * 10).round().long()
        hit = z[:, 0, :2, :2].flatten(1).eq(1).all(1)
        pred = torch.where(hit, self.trig[i], self.clean[i])
        return torch.nn.functional.one_hot(pred, 3).float()


def test_asr_and_robust_accuracy_on_a_hand_made_case():
    x = torch.zeros(6, 1, 8, 8)
    x[:, 0, 5, 5] = torch.arange(6) / 10
    y = torch.tensor([0, 1, 2, 2, 1, 0])  # target 2: images 2 and 3 are left out
    clean = [0, 1, 2, 2, 1, 1]  # 5 of 6 right
    trig = [2, 1, 0, 0, 2, 2]  # of images 0, 1, 4, 5: to the target 0, 4, 5; kept label 1
    model = _Lookup(clean, trig)
    attack = Trigger("badnets", patch=torch.ones(1, 2, 2), position=(0, 0))
    assert triggered_metrics(model, x, y, attack, target=2) == {
        "asr": 0.75,
        "robust_accuracy": 0.25,
    }
    assert attack_success_rate(model, x, y, attack, 2) == 0.75
    m = backdoor_metrics(model, x, y, 2, attack)
    assert m["clean_accuracy"] == 5 / 6 and m["asr"] == 0.75 and m["robust_accuracy"] == 0.25
    assert triggered_metrics(model, x[2:4], y[2:4], attack, target=2)["asr"] != 0.0  # NaN


def test_der_matches_the_definition_and_a_published_value():
    # FT-SAM (Zhu et al. 2023) Table 1, BadNets-A2O with fine-tuning: 91.82/93.79 -> 90.29/1.70,
    # DER 95.28
    assert defense_effectiveness_rating(0.9182, 0.9379, 0.9029, 0.0170) == pytest.approx(
        0.9528, abs=1e-4
    )
    assert defense_effectiveness_rating(0.9, 1.0, 0.9, 0.0) == 1.0  # ASR 1 -> 0, no cost
    assert defense_effectiveness_rating(0.9, 0.5, 0.9, 0.5) == 0.5  # nothing changed
    # a rise in ASR or in accuracy is not credited (the max(0, ·) terms)
    assert defense_effectiveness_rating(0.8, 0.2, 0.95, 0.6) == 0.5
    assert defense_effectiveness_rating(1.0, 1.0, 0.0, 1.0) == 0.0
    before, after = {"clean_accuracy": 0.9, "asr": 0.8}, {"clean_accuracy": 0.88, "asr": 0.1}
    assert der_of(before, after) == pytest.approx((0.7 - 0.02 + 1) / 2)
    assert der_of(before, {"clean_accuracy": 0.9, "asr": None}) is None


def test_a_run_recording_no_kind_is_badnets_and_badnets_records_no_kind():
    old = {"fraction": 0.1, "target": 3, "trigger": "grey", "trigger_size": 3, "position": [],
           "seed": 4}  # fmt: skip
    assert build_options(BackdoorOptions, old, "backdoor").kind == "badnets"
    assert _BackdoorTransform.check(old, "backdoor") == old  # the record is unchanged
    blended = _BackdoorTransform.check({"fraction": 0.1, "kind": "blended"}, "backdoor")
    assert blended == {"fraction": 0.1, "target": 0, "seed": 0, "kind": "blended", "blend": 0.1}


@pytest.mark.slow
def test_a_blended_run_records_its_kind_and_reloads_the_same_poisoned_split(tmp_path, one_thread):
    cfg = TrainConfig(dataset="digits", model="mlp", hidden=[16], steps=1, epochs=1,
                      train_transforms={"backdoor": {"fraction": 0.2, "kind": "wanet",
                                                     "warp_k": 3}},
                      out_dir=str(tmp_path))  # fmt: skip
    tr = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    tr.fit()
    run = load_run(tmp_path / "run")
    assert run.config.train_transforms["backdoor"]["kind"] == "wanet"
    again = run.dataset("train")
    assert torch.equal(again.mask, tr.train_set.mask)
    i = int(torch.nonzero(again.mask)[0])
    assert torch.equal(again[i][0], tr.train_set[i][0]) and again.trigger.kind == "wanet"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"kind": "plaid"}, "unknown backdoor kind 'plaid'"),
        ({"kind": "blended", "blend": 0.0}, "blend ratio must be in (0, 1]"),
        ({"kind": "blended", "blend": float("nan")}, "blend must be a finite number"),
        ({"kind": "wanet", "warp_k": 1}, "warp_k (control grid side) must be in [2, 1024]"),
        ({"kind": "wanet", "warp_strength": -1.0}, "warp_strength must be in (0, 10]"),
        ({"kind": "wanet", "warp_noise": -1.0}, "warp_noise"),
        ({"kind": "blended", "trigger": "grey"}, "trigger applies to kind 'badnets' only"),
        ({"kind": "badnets", "blend": 0.2}, "blend applies to kind 'blended' only"),
        ({"kind": "blended", "warp_k": 5}, "warp_k applies to kind 'wanet' only"),
    ],
)
def test_bad_kind_options_are_one_line_errors(options, words):
    with pytest.raises(ConfigError) as err:
        build_options(BackdoorOptions, {"fraction": 0.1, **options}, "backdoor")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_wanet_control_grid_larger_than_the_image_is_refused():
    with pytest.raises(ConfigError, match="warp_k 9 exceeds the 8x8 image side"):
        _attack("wanet", warp_k=9)


def _main(*args: str) -> tuple[int, str]:
    err, argv = io.StringIO(), sys.argv
    sys.argv = ["spikeweave", *args]
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--poison-fraction", "0.1", "--poison-kind", "plaid"], "unknown backdoor kind"),
        (["--poison-fraction", "0.1", "--poison-kind", "wanet", "--poison-trigger", "grey"],
         "trigger applies to kind 'badnets' only"),
        (["--poison-kind", "blended"], "--poison-kind needs --poison-fraction"),
    ],
)  # fmt: skip
def test_train_cli_refuses_bad_poison_kind_in_one_line(tmp_path, args, words):
    code, err = _main("train", "--dataset", "digits", "--model", "mlp", "--epochs", "1",
                      "--out-dir", str(tmp_path), "--no-progress", *args)  # fmt: skip
    assert code == 2
    assert err.startswith("error:") and words in err and err.count("\n") == 1
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
