import json

import pytest
import torch
from torch.nn.functional import cosine_similarity

from spikeweave.errors import ConfigError
from spikeweave.learning.bioleaf import (
    ApicalMismatch,
    BioLeaF,
    BioLeaFOptions,
    Microcircuit,
    apical_on,
    nudging_loss,
    phi,
    rate_network_gradients,
)
from spikeweave.losses import Loss
from spikeweave.tasks import DataSpec, make_task
from spikeweave.training import (
    METHODS,
    Callback,
    TrainConfig,
    Trainer,
    load_run,
    make_method,
)
from spikeweave.training.methods import StepContext

pytestmark = pytest.mark.usefixtures("one_thread")


def _digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from spikeweave import data

    ds = data.load("digits", "train")
    x = torch.stack([ds[i][0] for i in range(n)]).flatten(1)
    y = torch.tensor([int(ds[i][1]) for i in range(n)])
    return x, y


def test_registered_and_options_are_checked():
    assert "bioleaf" in METHODS.names()
    assert isinstance(make_method("bioleaf"), BioLeaF)
    for bad in (
        {"nudging": 1.5},
        {"feedback": "learned"},
        {"target_off": 0.9, "target_on": 0.5},
        {"tau_trace": 0.5},
        {"substeps": 0},
        {"lr_out": -1.0},
        {"no_such_option": 1},
        {"nudging": "strong"},
    ):
        with pytest.raises(ConfigError) as err:
            BioLeaF(bad)
        assert "\n" not in str(err.value)


def test_refuses_models_it_cannot_build():
    task = make_task("classification", DataSpec((1, 8, 8), 10, False))
    with pytest.raises(ConfigError, match="--model mlp"):
        BioLeaF().build_model(TrainConfig(dataset="digits", model="convnet"), task)
    net = BioLeaF().build_model(TrainConfig(dataset="digits", model="mlp", hidden=[30, 20]), task)
    assert net.sizes == (64, 30, 20, 10)
    assert BioLeaF().build_model(TrainConfig(dataset="digits", model="mlp"), task).sizes == (
        64,
        500,
        10,
    )


def test_forward_returns_binary_output_spikes_and_keeps_weights():
    torch.manual_seed(0)
    net = Microcircuit((12, 9, 7, 3), BioLeaFOptions(substeps=5, settle=8)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = net(torch.rand(4, 6, 12))
    assert out.shape == (20 - 8, 6, 3)  # settle = 8 steps are not read out
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not p.requires_grad for p in net.parameters())


def test_bp_equivalence_in_the_special_case():
    """Top-down = forward transposed, interneurons self-predicting, weak nudging: the
    microcircuit's spike-based update points along the rate network's negative gradient."""
    torch.manual_seed(0)
    opts = BioLeaFOptions(
        feedback="symmetric",
        nudging=0.1,
        interneuron_nudging=0.0,
        substeps=1,
        settle=60,
        tau_trace=8.0,
        init_gain=2.0,
        init_bias=0.0,
    )
    net = Microcircuit((10, 12, 8, 4), opts).eval()
    net.set_self_predicting()
    x = torch.rand(256, 10)
    u_target = net.target_potentials(torch.randint(0, 4, (256,)))
    _, deltas = net.simulate(x.expand(600, 256, 10), u_target, rules=("up",))
    grads = rate_network_gradients(net, x, u_target)
    for key in ("up", "b_up"):
        for k, (d, g) in enumerate(zip(deltas[key], grads[key], strict=True)):
            cos = float(cosine_similarity(d.flatten(), -g.flatten(), dim=0))
            assert cos >= 0.9, (key, k, cos)
    # and the update is gradient *descent* of the loss it names
    w = [p.clone() for p in net.w_up]
    net.apply_updates({"up": deltas["up"]}, lr_scale=1.0)

    def loss() -> float:
        r = x
        for k, wk in enumerate(net.w_up):
            v = r @ wk.T + net.b_up[k]
            r = phi(net.a_b * v) if k < len(net.w_up) - 1 else net.a_b_out * v
        return float(nudging_loss(r, u_target))

    after = loss()
    for p, old in zip(net.w_up, w, strict=True):
        p.copy_(old)
    assert after < loss()


def test_nudging_loss_gradient_is_the_nudged_error():
    v = torch.randn(5, 3, requires_grad=True)
    u = torch.randn(5, 3)
    (g,) = torch.autograd.grad(nudging_loss(v, u) * 5, v)
    sig = torch.sigmoid(v)
    assert torch.allclose(g, -(u - v) * sig * (1 - sig), atol=1e-6)


@pytest.mark.slow
def test_self_predicting_phase_cancels_the_top_down_input():
    torch.manual_seed(0)
    x, _ = _digits(512)
    net = Microcircuit((64, 100, 10)).train()
    start_ap, start_td = apical_on(net, x[:256], steps=4)
    for i in range(60):
        batch = x[(i * 64) % 512 :][:64]
        with net.plasticity(None, rules=("ip", "pi")):
            net(batch.expand(4, -1, -1))
    learned_ap, td = apical_on(net, x[:256], steps=4)
    ideal = Microcircuit((64, 100, 10))
    ideal.load_state_dict(net.state_dict())
    ideal.set_self_predicting()
    floor, _ = apical_on(ideal, x[:256], steps=4)
    assert learned_ap[0] < 0.5 * start_ap[0]
    assert learned_ap[0] < 0.35 * td[0]  # most of the top-down input is cancelled
    assert learned_ap[0] < 2.0 * floor[0]  # within 2x of the spike-noise floor of the ideal state


def test_updates_run_without_autograd_and_leave_no_grad():
    torch.manual_seed(0)
    x, y = _digits(64)
    method = BioLeaF({"self_predict_batches": 1})
    task = make_task("classification", DataSpec((1, 8, 8), 10, False))
    net = method.build_model(TrainConfig(dataset="digits", model="mlp", hidden=[40]), task)
    before = [p.clone() for p in net.parameters()]
    ctx = StepContext(
        net,
        None,
        lambda b: net(b.flatten(1).expand(4, -1, -1)),
        task.loss(),
        0.0,
        task,
    )
    assert isinstance(ctx.loss, Loss)
    with torch.no_grad():
        for _ in range(3):  # self-predicting, then two learning batches
            out, loss = method.train_step(ctx, x.view(64, 1, 8, 8), y)
    assert not out.requires_grad and not loss.requires_grad
    assert int(net.batches_seen) == 3
    assert all(p.grad is None for p in net.parameters())
    assert all(not p.requires_grad for p in net.parameters())
    after = dict(net.named_parameters())
    for i, name in enumerate(after):
        # random feedback stays fixed; every plastic synapse moved
        assert torch.equal(before[i], after[name]) == name.startswith("w_down"), name


def test_symmetric_feedback_tracks_forward_weights():
    torch.manual_seed(0)
    net = Microcircuit((6, 5, 4, 3), BioLeaFOptions(feedback="symmetric", substeps=4))
    x = torch.rand(3, 8, 6)
    with net.plasticity(net.target_potentials(torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])), lr_scale=1):
        net(x)
    for k, w in enumerate(net.w_down):
        assert torch.equal(w, net.w_up[k + 1].T)


@pytest.mark.slow
def test_trainer_run_learns_and_records_the_apical_mismatch(tmp_path):
    cfg = TrainConfig(
        dataset="digits", model="mlp", hidden=[100], method="bioleaf", epochs=5, batch_size=32,
        method_options={"self_predict_batches": 20}, out_dir=str(tmp_path),
    )  # fmt: skip
    method = BioLeaF(cfg.method_options)
    t = Trainer(cfg, method=method, run_dir=tmp_path / "a", progress=False)
    summary = t.fit()
    assert summary["test_accuracy"] > 0.6  # 0.73 measured; 12 epochs of 64-500-10 give ~0.91
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert {"apical_train/h1", "apical_test/h1", "apical_test_rel/h1"} <= set(rows[-1])
    assert rows[-1]["apical_test_rel/h1"] < 1.0  # interneurons cancel part of the top-down input
    assert (tmp_path / "a" / "apical_mismatch.png").stat().st_size > 1000
    assert (tmp_path / "a" / "spike_raster.png").is_file()
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["method"] == "bioleaf" and config["method_options"]["nudging"] == 0.5
    run = load_run(tmp_path / "a")  # rebuilt through the method, evaluated the same way
    assert run.evaluate("test")["accuracy"] == pytest.approx(summary["test_accuracy"])


class _CrashError(Exception):
    pass


@pytest.mark.slow
def test_crashed_run_resumes_to_the_same_weights(tmp_path):
    cfg = TrainConfig(
        dataset="digits", model="mlp", hidden=[30], method="bioleaf", epochs=2,
        method_options={"self_predict_batches": 10, "substeps": 4}, out_dir=str(tmp_path),
        plots=False,
    )  # fmt: skip
    full = Trainer(cfg, run_dir=tmp_path / "full", progress=False)
    full.fit()

    class Crash(Callback):
        def on_batch_end(self, trainer, epoch, batch, loss):
            if epoch == 2 and batch == 5:
                raise _CrashError

    crashing = Trainer(cfg, run_dir=tmp_path / "crash", progress=False, callbacks=[Crash()])
    with pytest.raises(_CrashError):
        crashing.fit()
    resumed = Trainer.resume(tmp_path / "crash", progress=False)
    resumed.fit()
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert int(resumed.model.batches_seen) == 2 * 23


def test_apical_mismatch_callback_rows():
    net = Microcircuit((8, 6, 5, 3), BioLeaFOptions(substeps=3)).eval()
    cb = ApicalMismatch()

    class _T:
        model = net

    cb.on_epoch_start(_T(), 1)
    net(torch.rand(2, 4, 8))
    row: dict = {}
    cb.on_epoch_end(_T(), 1, row)
    assert set(row) == {
        "apical_test/h1", "apical_test/h2", "apical_test_rel/h1", "apical_test_rel/h2",
    }  # fmt: skip
    assert all(v >= 0 for v in row.values())


def test_the_apical_mismatch_plot_is_drawn_only_when_the_run_draws_plots(tmp_path):
    from types import SimpleNamespace

    history = [{"epoch": e, "apical_train/h1": 0.5 / e, "apical_test/h1": 0.3 / e} for e in (1, 2)]
    for plots in (False, True):
        folder = tmp_path / str(plots)
        folder.mkdir()
        trainer = SimpleNamespace(config=TrainConfig(plots=plots), history=history,
                                  rundir=SimpleNamespace(path=folder))  # fmt: skip
        ApicalMismatch().on_fit_end(trainer, {})
        assert (folder / "apical_mismatch.png").is_file() is plots


def test_apical_mismatch_plot_names_layer_and_phase_of_each_line(tmp_path):
    from figure_checks import assert_readable, saved_figures

    from spikeweave.learning.bioleaf import plot_apical_mismatch

    history = [
        {
            "epoch": e,
            "apical_train/h1": 0.5 / e,
            "apical_test/h1": 0.3 / e,
            "apical_train_rel/h1": 1,
        }
        for e in (1, 2, 3)
    ]
    with saved_figures() as figures:
        plot_apical_mismatch(history, tmp_path / "a.png")
    assert_readable(figures, expected=1)
    labels = figures[0].axes[0].get_legend_handles_labels()[1]
    assert sorted(labels) == ["h1, test", "h1, training"]
