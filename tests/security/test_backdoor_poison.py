"""Backdoor poisoning: exactly round(fraction·N) images change, the rest stay byte-identical,
the dataset wrapper and the trainer agree with poison(), and bad input fails in one line."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from spikeweave import cli
from spikeweave.errors import ConfigError
from spikeweave.security.backdoor import (
    PoisonedDataset,
    attack_success_rate,
    heldout_triggers,
    make_trigger,
    paste,
    poison,
)
from spikeweave.training import RunDir, TrainConfig, Trainer, load_run
from spikeweave.training.checkpoint import save_checkpoint
from spikeweave.training.run import read_training_checkpoint


def _batch(n: int = 200, c: int = 1, hw: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, hw, hw, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("fraction", [0.0, 0.013, 0.1, 0.5, 1.0])
def test_poison_changes_exactly_the_fraction(fraction):
    x, y = _batch()
    trigger = make_trigger(3, 1, "grey", seed=4)
    xp, yp, mask = poison(x, y, trigger, target=7, fraction=fraction, seed=3)
    k = int(fraction * len(x) + 0.5)
    assert int(mask.sum()) == k
    changed = (xp != x).flatten(1).any(1)
    assert torch.equal(changed, mask)  # random images: every pasted patch differs somewhere
    keep = ~mask
    assert xp[keep].numpy().tobytes() == x[keep].numpy().tobytes()
    assert yp[keep].numpy().tobytes() == y[keep].numpy().tobytes()
    assert bool((yp[mask] == 7).all())
    # the change is one 3x3 patch equal to the trigger, nowhere else
    for i in torch.nonzero(mask).flatten().tolist():
        diff = torch.nonzero((xp[i] != x[i])[0])
        assert (diff.max(0).values - diff.min(0).values <= 2).all()
        assert torch.isin(xp[i][xp[i] != x[i]], trigger.flatten()).all()


def test_poison_is_seeded_and_fixed_position_is_respected():
    x, y = _batch(50, c=3)
    t = make_trigger(3, 1, "binary", seed=1)
    a = poison(x, y, t, 2, 0.4, seed=5, position=(0, 9))
    b = poison(x, y, t, 2, 0.4, seed=5, position=(0, 9))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    xp, _, mask = a
    assert torch.equal(xp[mask][:, :, 0:3, 9:12], t.expand(int(mask.sum()), 3, 3, 3))


def test_poisoned_dataset_matches_poison():
    x, y = _batch(60)
    t = make_trigger(3, 1, "binary", seed=2)
    ds = PoisonedDataset(torch.utils.data.TensorDataset(x, y), t, 1, 0.25, seed=9)
    xp, yp, mask = poison(x, y, t, 1, 0.25, seed=9)
    assert torch.equal(ds.mask, mask)
    got = [ds[i] for i in range(len(ds))]
    assert torch.equal(torch.stack([g[0] for g in got]), xp)
    assert torch.equal(torch.stack([g[1] for g in got]), yp)


def test_trainer_poisons_the_training_split_only(tmp_path):
    cfg = TrainConfig(dataset="digits", model="mlp", steps=1, epochs=1, val_fraction=0.2,
                      train_transforms={"backdoor": {"fraction": 0.1, "target": 3}},
                      out_dir=str(tmp_path), plots=False)  # fmt: skip
    tr = Trainer(cfg, progress=False)
    assert isinstance(tr.train_set, PoisonedDataset)
    assert int(tr.train_set.mask.sum()) == int(0.1 * len(tr.train_set) + 0.5)
    assert not isinstance(tr.val_set, PoisonedDataset)
    again = TrainConfig.from_dict(tr.config.to_dict()).train_transforms["backdoor"]
    assert again == {
        "fraction": 0.1,
        "target": 3,
        "trigger": "binary",
        "trigger_size": 3,
        "position": [],
        "seed": 0,
    }  # every option recorded, defaults included


def test_core_config_has_no_poisoning_fields():
    assert not [f for f in dataclasses.fields(TrainConfig) if "poison" in f.name]


def _legacy(config: dict) -> dict:
    """A config dict as spikeweave wrote it before ``train_transforms`` (flat poison_* keys)."""
    old = dict(config)
    table = old.pop("train_transforms").get("backdoor", {"fraction": 0.0})
    defaults = {"fraction": 0.0, "target": 0, "trigger": "binary", "trigger_size": 3,
                "position": [], "seed": 0}  # fmt: skip
    old.update({f"poison_{k}": table.get(k, v) for k, v in defaults.items()})
    return old


def test_run_written_with_legacy_poison_keys_loads_and_evaluates_the_same(tmp_path):
    cfg = TrainConfig(dataset="digits", model="mlp", hidden=[32], steps=1, epochs=1,
                      train_transforms={"backdoor": {"fraction": 0.2, "target": 3, "seed": 4}},
                      out_dir=str(tmp_path), plots=False)  # fmt: skip
    tr = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    tr.fit()
    new = load_run(tmp_path / "run")
    want = {s: new.evaluate(s) for s in ("train", "test")}
    assert torch.equal(new.dataset("train").mask, tr.train_set.mask)  # the same poisoned split
    # rewrite the run as an older spikeweave wrote it: config.json and checkpoint with poison_*
    path = tmp_path / "run" / RunDir.CHECKPOINT
    tensors, meta = read_training_checkpoint(path)
    meta["config"] = _legacy(meta["config"])
    save_checkpoint(path, tensors, meta)
    conf = tmp_path / "run" / RunDir.CONFIG
    conf.write_text(json.dumps(_legacy(json.loads(conf.read_text()))))
    old = load_run(tmp_path / "run")
    assert old.config.train_transforms == new.config.train_transforms
    assert {s: old.evaluate(s) for s in ("train", "test")} == want
    folded = TrainConfig.from_dict(json.loads(conf.read_text()))
    # load_run records the device it loaded on (the CPU by default) in the config it returns
    assert dataclasses.replace(folded, device=new.config.device) == new.config


def test_legacy_poison_keys_with_fraction_zero_were_off_and_are_dropped():
    old = _legacy(TrainConfig().to_dict())
    assert old["poison_fraction"] == 0.0
    assert TrainConfig.from_dict(old).train_transforms == {}


@pytest.mark.parametrize(
    ("transforms", "words"),
    [
        ({"blur": {}}, "unknown training-data transform 'blur'"),
        ({"backdoor": {"fraction": 0.1, "colour": 1}}, "unknown option(s) 'colour'"),
        ({"backdoor": {"target": 3}}, "needs a fraction"),
        ({"backdoor": 0.1}, "must be a table of options"),
    ],
)
def test_bad_train_transforms_are_refused_in_one_line(tmp_path, transforms, words):
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=1, train_transforms=transforms,
                      out_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(ConfigError) as err:
        Trainer(cfg, progress=False)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_paste_is_differentiable_and_asr_counts_non_target_images():
    x = torch.zeros(4, 1, 6, 6)
    t = torch.full((1, 2, 2), 0.5, requires_grad=True)
    out = paste(x, t, torch.tensor([[0, 0], [4, 4], [2, 1], [0, 4]]))
    out.sum().backward()
    assert float(t.grad.sum()) == 16.0 and float(out.detach().sum()) == 8.0

    class Bright(torch.nn.Module):  # class 1 iff any pixel is set
        def forward(self, z):
            hit = (z.flatten(1).amax(1) > 0).float()
            return torch.stack([1 - hit, hit], 1)

    y = torch.tensor([0, 0, 1, 0])
    assert attack_success_rate(Bright(), x, y, torch.ones(1, 2, 2), target=1) == 1.0
    assert attack_success_rate(Bright(), x, y, torch.zeros(1, 2, 2), target=1) == 0.0


def test_heldout_triggers_are_51_distinct_black_and_white_patterns():
    t = make_trigger(3, 1, "binary", seed=0)
    h = heldout_triggers(t)
    assert h.shape == (51, 1, 3, 3)
    assert torch.equal(h[0], t)
    assert set(h.unique().tolist()) <= {0.0, 1.0}
    assert len({tuple(p.flatten().tolist()) for p in h}) == 51


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"fraction": 1.5}, "fraction must be in [0, 1]"),
        ({"fraction": -0.1}, "fraction must be in [0, 1]"),
        ({"trigger": torch.ones(1, 13, 13)}, "larger than the 12x12 image"),
        ({"target": 10}, "out of range"),
        ({"target": -1}, "out of range"),
    ],
)
def test_bad_input_one_line_errors(kwargs, words):
    x, y = _batch(20)
    y[0] = 9  # ten classes
    args = {"trigger": make_trigger(3), "target": 1, "fraction": 0.1, **kwargs}
    with pytest.raises(ConfigError) as err:
        poison(x, y, args["trigger"], args["target"], args["fraction"], num_classes=10)
    assert words in str(err.value) and "\n" not in str(err.value)


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
        (["--poison-fraction", "1.5"], "fraction must be in [0, 1]"),
        (["--poison-fraction", "0.1", "--poison-trigger-size", "9"], "larger than the 8x8"),
        (["--poison-fraction", "0.1", "--poison-target", "10"], "out of range"),
        (["--poison-fraction", "0.1", "--poison-trigger", "plaid"], "unknown trigger kind"),
        (["--poison-target", "3"], "--poison-target needs --poison-fraction"),
        (["--poison-seed", "3"], "--poison-seed needs --poison-fraction"),
    ],
)
def test_train_cli_refuses_bad_poison_options(tmp_path, args, words):
    code, err = _main("train", "--dataset", "digits", "--model", "mlp", "--epochs", "1",
                      "--out-dir", str(tmp_path), "--no-progress", *args)  # fmt: skip
    assert code == 2
    assert err.startswith("error:") and words in err and err.count("\n") == 1
