"""Backdoor poisoning: exactly round(fraction·N) images change, the rest stay byte-identical,
the dataset wrapper and the trainer agree with poison(), and bad input fails in one line."""

from __future__ import annotations

import io
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
from spikeweave.training import TrainConfig, Trainer


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
                      poison_fraction=0.1, poison_target=3, out_dir=str(tmp_path))  # fmt: skip
    tr = Trainer(cfg, progress=False)
    assert isinstance(tr.train_set, PoisonedDataset)
    assert int(tr.train_set.mask.sum()) == int(0.1 * len(tr.train_set) + 0.5)
    assert not isinstance(tr.val_set, PoisonedDataset)
    assert TrainConfig.from_dict(tr.config.to_dict()).poison_target == 3


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
    ],
)
def test_train_cli_refuses_bad_poison_options(tmp_path, args, words):
    code, err = _main("train", "--dataset", "digits", "--model", "mlp", "--epochs", "1",
                      "--out-dir", str(tmp_path), "--no-progress", *args)  # fmt: skip
    assert code == 2
    assert err.startswith("error:") and words in err and err.count("\n") == 1
