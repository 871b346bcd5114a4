"""MESA on a small backdoored model: the attacked class is found, the defense lowers the attack
success while clean accuracy stays within 2 points, and the CLI works and fails in one line."""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch
from torch import nn

from spikeweave import cli, data, load_run
from spikeweave.security.backdoor import attack_success_rate, make_trigger, poison
from spikeweave.security.mesa import (
    FinetuneOptions,
    MesaOptions,
    detect_target,
    ensemble_sampler,
    finetune,
    fixed_sampler,
    train_mesa,
)
from spikeweave.training import RunDir, TrainConfig, Trainer
from spikeweave.training.run import read_training_checkpoint

TARGET = 0


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


@pytest.fixture(scope="module")
def backdoored():
    """A ReLU MLP on digits trained on 30% poisoned images (full-batch Adam, a second)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared CPU: intra-op threads only spin against each other
    x, y = data.load("digits", "train").tensors
    xt, yt = data.load("digits", "test").tensors
    trigger = make_trigger(3, 1, "binary", seed=0)
    xc, yc = x[:1100], y[:1100]  # the attacker's training data
    xd, yd = x[1100:], y[1100:]  # the defender's clean images
    xp, yp, _ = poison(xc, yc, trigger, TARGET, 0.3, seed=1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(500):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xp), yp).backward()
        opt.step()
    net.eval()
    yield net, trigger, (xd, yd), (xt, yt)
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_mesa_defense_lowers_attack_success_and_keeps_accuracy(backdoored):
    net, trigger, (xd, yd), (xt, yt) = backdoored
    before_asr = attack_success_rate(net, xt, yt, trigger, TARGET, seed=3)
    before_acc = _accuracy(net, xt, yt)
    assert before_asr > 0.6
    opts = MesaOptions(betas=(0.9, 0.5), hidden=128, steps=150)
    gens = train_mesa(net, xd, yd, TARGET, opts, seed=0)
    assert set(gens) == {0.9, 0.5}
    sample = gens[0.9].sample(8)
    assert sample.shape == (8, 1, 3, 3) and bool(((sample >= 0) & (sample <= 1)).all())
    defended = finetune(net, xd, yd, ensemble_sampler(list(gens.values())), FinetuneOptions())
    after_asr = attack_success_rate(defended, xt, yt, trigger, TARGET, seed=3)
    assert after_asr < 0.25 and after_asr < before_asr / 3, (before_asr, after_asr)
    assert _accuracy(defended, xt, yt) >= before_acc - 0.02  # at most 2 points lost
    # the original model is untouched
    assert attack_success_rate(net, xt, yt, trigger, TARGET, seed=3) == before_asr


@pytest.mark.slow
def test_clean_finetuning_alone_leaves_more_backdoor(backdoored):
    net, trigger, (xd, yd), (xt, yt) = backdoored
    control = finetune(net, xd, yd, None, FinetuneOptions())
    assert attack_success_rate(control, xt, yt, trigger, TARGET, seed=3) > 0.3


def test_finetune_is_a_trainer_run_written_as_a_normal_run_directory(backdoored, tmp_path):
    net, trigger, (xd, yd), (xt, yt) = backdoored
    before = attack_success_rate(net, xt, yt, trigger, TARGET, seed=3)
    options = FinetuneOptions(epochs=3)
    defended = finetune(net, xd, yd, fixed_sampler(trigger), options, seed=1,
                        run_dir=tmp_path / "ft")  # fmt: skip
    assert attack_success_rate(defended, xt, yt, trigger, TARGET, seed=3) < before / 2
    assert not defended.training
    run = RunDir(tmp_path / "ft")
    for name in (RunDir.CONFIG, RunDir.CHECKPOINT, RunDir.SUMMARY):
        assert (run.path / name).is_file(), name
    config = json.loads((run.path / RunDir.CONFIG).read_text())
    assert config["method"] == "mesa-finetune" and config["epochs"] == 3
    assert config["method_options"]["momentum"] == 0.9 and config["lr"] == options.lr
    assert len((run.path / RunDir.METRICS).read_text().splitlines()) == 3
    tensors, meta = read_training_checkpoint(run.path / RunDir.CHECKPOINT)
    assert meta["epoch"] == 3 and meta["method_state"] is not None
    saved = {k[len("model/classifier.") :]: v for k, v in tensors.items() if k.startswith("model/")}
    assert all(torch.equal(saved[k], v) for k, v in defended.state_dict().items())


@pytest.mark.slow
def test_detection_finds_the_attacked_class(backdoored):
    net, _, (xd, yd), _ = backdoored
    det = detect_target(net, xd, yd, 10, MesaOptions(hidden=64), steps=30, samples=128)
    assert det.target == TARGET
    assert det.scores[TARGET] > 0.5 and sorted(det.scores)[-2] < 0.5


def _main(*args: str) -> tuple[int, str, str]:
    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["spikeweave", *args]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_backdoor_cli_defend_and_scan(tmp_path, one_thread):
    cfg = TrainConfig(dataset="digits", model="ann-mlp", hidden=[64], epochs=3, lr=1e-2,
                      val_fraction=0.2,
                      train_transforms={"backdoor": {"fraction": 0.1, "target": 2}},
                      out_dir=str(tmp_path), plots=False)  # fmt: skip
    run_dir = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()["run_dir"]
    code, out, err = _main("backdoor", "defend", run_dir, "--target", "2", "--mesa-steps", "10",
                           "--betas", "0.9", "--finetune-epochs", "2", "--out-dir",
                           str(tmp_path / "out"))  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "out" / "backdoor_defend.json").read_text())
    assert result["target"] == 2 and result["before"]["asr"] is not None
    assert "heldout_worst_asr" in result["after"]
    assert 0 <= result["after"]["robust_accuracy"] <= 1 and 0 <= result["der"] <= 1
    assert result["trigger_kind"] == "badnets"
    assert (tmp_path / "out" / "triggers_beta0.9.png").stat().st_size > 0
    defended = load_run(result["defended_run"])
    assert defended.config.train_transforms["backdoor"]["target"] == 2
    code, out, err = _main("backdoor", "scan", run_dir, "--steps", "3", "--out-dir",
                           str(tmp_path / "out"))  # fmt: skip
    assert code == 0, err
    assert len(json.loads((tmp_path / "out" / "backdoor_scan.json").read_text())["scores"]) == 10
    for args, words in [
        (["--target", "12"], "out of range"),
        (["--target", "x"], "'auto' or a class index"),
        (["--betas", "1.5"], "--betas must be numbers in (0, 1)"),
        (["--defense", "nope"], "unknown defense"),
    ]:
        code, _, err = _main("backdoor", "defend", run_dir, *args)
        assert code == 2 and err.startswith("error:") and words in err and err.count("\n") == 1
    code, _, err = _main("backdoor", "scan", str(tmp_path / "missing"))
    assert code == 2 and err.count("\n") == 1


def test_cifar10_config_refuses_clearly_without_files(tmp_path):
    from pathlib import Path

    from spikeweave.errors import DataError
    from spikeweave.training import load_config

    path = Path(__file__).resolve().parents[2] / "configs" / "mesa-cifar10.toml"
    cfg = TrainConfig.from_dict({**load_config(path), "data_root": str(tmp_path)})
    assert cfg.train_transforms["backdoor"]["fraction"] > 0 and cfg.val_fraction > 0
    with pytest.raises(DataError) as err:
        Trainer(cfg, progress=False)
    assert "cifar10" in str(err.value) and "\n" not in str(err.value)


def test_experiment_is_registered_with_both_models():
    from spikeweave.experiments.mesa import MesaExperiment, _settings

    assert MesaExperiment.name == "mesa"
    (quick,) = _settings(True)
    assert dict(quick.models) == {"SNN": "convnet", "ANN": "ann"}
    assert quick.dataset == "digits" and quick.kinds == ("badnets",)
    assert quick.strength_rates == (0.1,)
    full = _settings(False)[0]
    assert full.dataset == "fashion-mnist" and full.val_fraction == 5000 / 60000
    assert full.kinds == ("badnets", "blended", "wanet")
    assert full.strength_rates == (0.01, 0.05, 0.10) and 0 < full.train_size < 55000


@pytest.mark.slow
def test_tiny_experiment_reports_bench_metrics_per_kind_and_defense(
    tmp_path, monkeypatch, one_thread
):
    from spikeweave.experiments import mesa as exp
    from spikeweave.experiments import run_experiment

    tiny = exp.MesaSettings(
        dataset="digits", epochs=1, lr=1e-2, val_fraction=0.3, kinds=("badnets", "blended"),
        strength_rates=(0.2,), betas=(0.9,), mesa_steps=3, generator_hidden=16,
        detect_steps=2, finetune_epochs=1, heldout_images=20, models=(("ANN", "ann"),),
    )  # fmt: skip
    monkeypatch.setattr(exp, "_settings", lambda quick: [tiny])
    _, folder = run_experiment("mesa", quick=True, seeds=1, out_dir=tmp_path, progress=False)
    res = json.loads((folder / "report.json").read_text())["results"]
    assert res["seeds"] == [0] and res["images"] == {"digits": len(data.load("digits", "test"))}
    for kind in ("badnets", "blended"):
        assert 0 <= res[f"asr_before_{kind}"]["digits"]["ANN"]["0.2"] <= 1
        (row,) = res["digits"][f"{kind} @ 0.2"]["ANN"]
        assert {"MESA ensemble", "single trigger", "clean fine-tuning"} <= set(row["after"])
        for after in row["after"].values():
            assert 0 <= after["robust_accuracy"] <= 1 and 0 <= after["der"] <= 1
        assert ("true trigger (ideal)" in row["after"]) == (kind == "badnets")
        assert ("heldout_worst_asr" in row["before"]) == (kind == "badnets")


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(steps=0), r"--steps \(generator steps per class\) must be in \[1"),
     (dict(samples=-1), r"--samples \(clean images\) must be in \[1"),
     (dict(seed=2**70), r"--seed \(seed of the search\) must be in \[0")],
)  # fmt: skip
def test_backdoor_scan_refuses_counts_that_would_report_meaningless_scores(tmp_path, kwargs, match):
    from spikeweave.errors import ConfigError
    from spikeweave.security.backdoor_cli import scan_command

    with pytest.raises(ConfigError, match=match):  # checked before the run is even looked for
        scan_command(tmp_path / "no-run", **kwargs)
