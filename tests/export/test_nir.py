"""NIR export and import: exact round trips, units, refusals, run directories and peers.

The peer tests here (Norse, snnTorch) run only where those libraries are installed in this
environment; elsewhere they skip with the reason. test_nir_peers.py runs them from their own venv
(../shared/docs/peers.md) when SPIKEWEAVE_PEERS_PYTHON names its python.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

import spikeweave as sf
from spikeweave.errors import ConfigError, DataError
from spikeweave.export import SumPool2d, from_nir, load_nir, save_nir, to_nir
from spikeweave.export.cli import export_command, import_command
from spikeweave.layers import TimeFolded
from spikeweave.models import MLP, ConvNet
from spikeweave.training import TrainConfig, Trainer, load_run

DATA = Path(__file__).parent / "data"


# -- helpers ----------------------------------------------------------------------------------


def _layer_outputs(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every top-level layer of ``model`` for ``x``."""
    outs = []
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            outs.append(x)
    return outs


def _one_line_config_error(excinfo: pytest.ExceptionInfo, *words: str) -> str:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ConfigError)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LIF MLP trained for two epochs on digits (no BatchNorm), and its run directory."""
    torch.set_num_threads(1)  # two shared cores: intra-op threads only fight each other
    out = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(
        dataset="digits",
        model="mlp",
        batch_norm=False,
        hidden=[32],
        steps=4,
        epochs=2,
        tau=3.0,
        decay_input=False,
        lr=1e-2,
        batch_size=64,
        out_dir=str(out),
        seed=0,
        plots=False,
    )
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    return load_run(trainer.run_dir)


@pytest.fixture(scope="module")
def digits_batch():
    from spikeweave import data

    test = data.load("digits", "test")
    return torch.stack([torch.as_tensor(test[i][0]) for i in range(64)])


# -- spikeweave -> NIR -> spikeweave ----------------------------------------------------------


def test_round_trip_through_a_nir_file_gives_identical_spikes_on_a_trained_model(
    trained, digits_batch, tmp_path
):
    path = save_nir(trained, tmp_path / "model.nir", dt=1e-3)
    net = load_nir(path)
    x = trained.encode(digits_batch)
    ours = _layer_outputs(trained.model, x)
    back = _layer_outputs(net, x)
    assert [type(m) for m in net] == [type(m) for m in trained.model]
    for a, b in zip(ours, back, strict=True):
        assert torch.equal(a, b)
    spikes = ours[2]  # after the hidden LIF layer
    assert 0 < spikes.mean() < 1, "a silent or saturated layer would prove nothing"


def test_round_trip_of_conv_avg_and_sum_pooling_if_and_lif_is_exact():
    torch.manual_seed(1)
    model = nn.Sequential(
        OrderedDict(
            conv=TimeFolded(nn.Conv2d(2, 4, 3, padding=1, stride=1)),
            if1=sf.IF(threshold=0.5),
            avg=TimeFolded(nn.AvgPool2d(2)),
            conv2=TimeFolded(nn.Conv2d(4, 4, 3, padding=0, bias=False)),
            lif1=sf.LIF(tau=4.0, decay_input=False, v_reset=-0.1),
            sum=TimeFolded(SumPool2d(2)),
            flat=TimeFolded(nn.Flatten()),
            fc=TimeFolded(nn.Linear(4, 6, bias=False)),
            lif2=sf.LIF(tau=1.5),
        )
    ).eval()
    graph = to_nir(model, dt=0.25, input_shape=(2, 8, 8))
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds == [
        "Input",
        "Conv2d",
        "IF",
        "AvgPool2d",
        "Conv2d",
        "LIF",
        "SumPool2d",
        "Flatten",
        "Linear",
        "LIF",
        "Output",
    ]
    net = from_nir(graph)
    x = 2 * torch.rand(5, 3, 2, 8, 8)
    for a, b in zip(_layer_outputs(model, x), _layer_outputs(net, x), strict=True):
        assert torch.equal(a, b)


def test_batchnorm_in_eval_mode_is_folded_into_the_preceding_affine():
    torch.manual_seed(2)
    model = MLP((16,), 3, lambda: sf.LIF(tau=2.0), hidden=(24,), population=2, batch_norm=True)
    bn = model.fc1.module[1]
    with torch.no_grad():  # running statistics far from the identity, so folding is exercised
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    model.eval()
    graph = to_nir(model, dt=1e-3, input_shape=(16,))
    assert "BatchNorm" not in str([type(n).__name__ for n in graph.nodes.values()])
    assert isinstance(graph.nodes["fc1"], nir.Affine)
    net = from_nir(graph)
    x = torch.rand(6, 32, 16)
    ours, back = _layer_outputs(model, x), _layer_outputs(net, x)
    # the folded affine equals Linear→BatchNorm up to float rounding, and the spikes agree
    torch.testing.assert_close(back[1], ours[1], rtol=1e-5, atol=1e-6)
    assert torch.equal(back[2], ours[2])


# -- units -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 1.5, 3.0, 7.0, 20.0])
@pytest.mark.parametrize("dt", [1e-4, 1e-3, 0.1, 0.7])
@pytest.mark.parametrize("decay_input", [True, False])
def test_units_round_trip_exactly_tau_in_steps_and_seconds(tau, dt, decay_input):
    model = nn.Sequential(sf.LIF(tau=tau, threshold=0.8, v_reset=-0.2, decay_input=decay_input))
    node = to_nir(model, dt=dt, input_shape=(3,)).nodes["0"]
    assert isinstance(node, nir.LIF)
    np.testing.assert_array_equal(node.tau, np.full(3, tau * dt))  # seconds
    np.testing.assert_array_equal(node.r, np.full(3, 1.0 if decay_input else tau))
    np.testing.assert_array_equal(node.v_leak, np.full(3, -0.2))
    np.testing.assert_array_equal(node.v_reset, np.full(3, -0.2))
    np.testing.assert_array_equal(node.v_threshold, np.full(3, 0.8))
    lif = from_nir(to_nir(model, dt=dt, input_shape=(3,)))[0]
    assert (lif.tau, lif.threshold, lif.v_reset, lif.decay_input) == (tau, 0.8, -0.2, decay_input)


def test_units_of_if_and_the_recorded_dt_survive_a_file(tmp_path):
    path = save_nir(
        nn.Sequential(sf.IF(threshold=2.0)), tmp_path / "if.nir", dt=0.02, input_shape=(4,)
    )
    graph = nir.read(path)
    assert float(graph.metadata["dt"]) == 0.02
    np.testing.assert_array_equal(graph.nodes["0"].r, np.full(4, 1 / 0.02))  # dv/dt = R·I
    neuron = load_nir(path)[0]
    assert type(neuron) is sf.IF and neuron.threshold == 2.0


def test_the_exported_lif_is_nirs_ode_under_forward_euler():
    """Simulate NIR's equations from the exported numbers alone and compare with spikeweave."""
    tau, dt = 5.0, 1e-3
    for decay_input in (True, False):
        lif = sf.LIF(
            tau=tau, threshold=1.0, v_reset=0.0, decay_input=decay_input, backend="reference"
        )
        node = to_nir(nn.Sequential(lif), dt=dt, input_shape=(50,)).nodes["0"]
        x = (
            torch.rand(30, 1, 50, dtype=torch.float64)
            * (0.6 if decay_input else 0.3)
            * (tau if decay_input else 1.0)
        )
        v = np.array(node.v_reset, dtype=np.float64)
        spikes = []
        for t in range(x.shape[0]):
            # tau·dv/dt = (v_leak − v) + R·I, one Euler step of dt
            v = v + dt / node.tau * ((node.v_leak - v) + node.r * x[t, 0].numpy())
            s = v >= node.v_threshold  # spikeweave's H(0) = 1 convention
            v = np.where(s, node.v_reset, v)
            spikes.append(s)
        ours = lif(x)[:, 0].numpy().astype(bool)
        np.testing.assert_array_equal(ours, np.stack(spikes))
        assert ours.any() and not ours.all()


def test_a_foreign_file_without_dt_needs_dt_and_tau_below_one_step_is_refused():
    model = nn.Sequential(sf.LIF(tau=2.0))
    graph = to_nir(model, dt=1e-3, input_shape=(2,))
    graph.metadata = {}
    with pytest.raises(ConfigError) as excinfo:
        from_nir(graph)
    _one_line_config_error(excinfo, "'0'", "dt=")
    assert from_nir(graph, dt=1e-3)[0].tau == 2.0
    with pytest.raises(ConfigError) as excinfo:
        from_nir(graph, dt=1e-2)  # tau = 2 ms is 0.2 steps of 10 ms
    _one_line_config_error(excinfo, "below one step")


def test_an_r_that_is_neither_convention_becomes_an_exact_input_scale():
    node = nir.LIF(
        tau=np.full(3, 4e-3),
        r=np.full(3, 2.0),
        v_leak=np.zeros(3),
        v_threshold=np.ones(3),
        v_reset=np.zeros(3),
    )
    graph = nir.NIRGraph.from_list(node)
    net = from_nir(graph, dt=1e-3)
    assert [type(m).__name__ for m in net] == ["InputScale", "LIF"]
    assert net[1].tau == 4.0 and not net[1].decay_input
    torch.testing.assert_close(net[0].scale, torch.full((3,), 0.5))


# -- refusals ----------------------------------------------------------------------------------


def test_soft_reset_is_refused_on_export_with_one_line():
    model = nn.Sequential(OrderedDict(spike=sf.LIF(reset="soft")))
    with pytest.raises(ConfigError) as excinfo:
        to_nir(model, dt=1e-3, input_shape=(4,))
    _one_line_config_error(excinfo, "'spike'", "soft", "reset='hard'")


def test_maxpool_is_refused_on_export_with_one_line():
    model = ConvNet((1, 8, 8), 10, lambda: sf.LIF(), channels=(4,), hidden=8).eval()
    with pytest.raises(ConfigError) as excinfo:
        to_nir(model, dt=1e-3, input_shape=(1, 8, 8))
    _one_line_config_error(excinfo, "'pool1'", "MaxPool2d", "AvgPool2d")


def test_klif_is_refused_on_export_with_one_line():
    model = nn.Sequential(OrderedDict(k=sf.KLIF()))
    with pytest.raises(ConfigError) as excinfo:
        to_nir(model, dt=1e-3, input_shape=(4,))
    _one_line_config_error(excinfo, "'k'", "KLIF", "'lif'")


def test_batchnorm_in_training_mode_is_refused_on_export():
    model = MLP((4,), 2, lambda: sf.LIF(), hidden=(3,), population=1, batch_norm=True)
    with pytest.raises(ConfigError) as excinfo:
        to_nir(model, dt=1e-3, input_shape=(4,))
    _one_line_config_error(excinfo, "'fc1.1'", "model.eval()")


def test_cubalif_without_synaptic_memory_imports_as_lif():
    # tau_syn = dt: the Euler step of the current is I[t] = w_in·S[t], so CubaLIF is a LIF
    cuba = nir.CubaLIF(
        tau_syn=np.full(3, 1e-3),
        tau_mem=np.full(3, 4e-3),
        r=np.full(3, 4.0),
        v_leak=np.zeros(3),
        v_threshold=np.ones(3),
        w_in=np.full(3, 0.5),
    )
    net = from_nir(nir.NIRGraph.from_list(cuba), dt=1e-3)
    assert [type(m).__name__ for m in net] == ["InputScale", "LIF"]
    assert net[1].tau == 4.0 and not net[1].decay_input
    torch.testing.assert_close(net[0].scale, torch.full((3,), 0.5))


def test_unsupported_and_branching_graphs_are_refused_on_import():
    cuba = nir.CubaLIF(
        tau_syn=np.full(2, 5.0),
        tau_mem=np.full(2, 3.0),
        r=np.ones(2),
        v_leak=np.zeros(2),
        v_threshold=np.ones(2),
    )
    with pytest.raises(ConfigError) as excinfo:
        from_nir(nir.NIRGraph.from_list(cuba), dt=1.0)
    _one_line_config_error(excinfo, "CubaLIF", "tau_syn = 5 steps", "tau_syn = dt")
    with pytest.raises(ConfigError) as excinfo:
        from_nir(nir.NIRGraph.from_list(nir.Threshold(threshold=np.ones(2))))
    _one_line_config_error(excinfo, "Threshold", "not supported")
    a = nir.Affine(weight=np.eye(2, dtype=np.float32), bias=np.zeros(2, dtype=np.float32))
    b = nir.Affine(weight=np.eye(2, dtype=np.float32), bias=np.zeros(2, dtype=np.float32))
    branching = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "a": a,
            "b": b,
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
    )
    with pytest.raises(ConfigError) as excinfo:
        from_nir(branching)
    _one_line_config_error(excinfo, "'input'", "chains")


def test_a_file_that_is_not_nir_is_a_one_line_data_error(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    for path in (bad, tmp_path / "missing.nir"):
        with pytest.raises(DataError) as excinfo:
            load_nir(path)
        assert "\n" not in str(excinfo.value)


# -- the command line: export a run, import it as a run that eval accepts ----------------------


def _cli() -> typer.Typer:
    """The two commands wired as the lead wires them into spikeweave/cli/__init__.py."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("export")(export_command)
    app.command("import")(import_command)
    return app


def test_spikeweave_import_writes_a_run_that_eval_accepts(trained, tmp_path):
    from spikeweave.cli import app as main_app

    runner = CliRunner()
    path = tmp_path / "model.nir"
    res = runner.invoke(_cli(), ["export", str(trained.path), str(path), "--dt", "0.001"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "imported"
    res = runner.invoke(_cli(), ["import", str(path), str(out)])
    assert res.exit_code == 0, res.output
    run = load_run(out)
    assert (run.config.model, run.config.neuron, run.config.tau) == ("mlp", "lif", 3.0)
    assert run.epoch == 0
    res = runner.invoke(main_app, ["eval", str(out)])
    assert res.exit_code == 0, res.output
    assert run.evaluate("test")["accuracy"] == trained.evaluate("test")["accuracy"]


def test_import_of_a_graph_no_trainconfig_describes_says_what_to_use(tmp_path):
    model = nn.Sequential(
        TimeFolded(nn.Conv2d(1, 2, 3)),
        sf.IF(),
        TimeFolded(nn.Flatten()),
        TimeFolded(nn.Linear(72, 10)),
        sf.IF(),
    ).eval()
    path = save_nir(model, tmp_path / "conv.nir", dt=1e-3, input_shape=(1, 8, 8))
    from spikeweave.export import import_run

    with pytest.raises(ConfigError) as excinfo:
        import_run(path, tmp_path / "out", dataset="digits", steps=4)
    _one_line_config_error(excinfo, "Conv2d", "load_nir")
    assert not (tmp_path / "out").exists()


# -- peers: optional, each skips with its reason when the library is absent ---------------------


def _peer(name: str):
    return pytest.importorskip(
        name, reason=f"{name} is not installed (optional; see ../shared/docs/peers.md)"
    )


def _peer_mlp(decay_input: bool) -> nn.Sequential:
    """Linear → LIF(τ=2) → Linear → LIF, no readout: the layout peers import as a chain."""
    torch.manual_seed(3)
    model = nn.Sequential(
        TimeFolded(nn.Linear(20, 30)),
        sf.LIF(tau=2.0, decay_input=decay_input),
        TimeFolded(nn.Linear(30, 10)),
        sf.LIF(tau=2.0, decay_input=decay_input),
    ).eval()
    gain = 1.0 if decay_input is False else 2.0  # decay_input halves the input at tau = 2
    with torch.no_grad():  # default init leaves the output layer nearly silent
        model[0].module.weight.mul_(2.0 * gain)
        model[2].module.weight.mul_(4.0 * gain)
    return model


def _x() -> torch.Tensor:
    torch.manual_seed(4)
    return torch.rand(12, 8, 20) * 1.5


def test_norse_imports_a_spikeweave_export_with_the_same_spikes():
    norse = _peer("norse.torch")
    model = _peer_mlp(decay_input=True)  # Norse's LIFBox: dv = dt/τ·(I + v_leak − v), R = 1
    dt = 1e-3
    net = norse.from_nir(to_nir(model, dt=dt, input_shape=(20,)), dt=dt)
    x = _x()
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            z, state = net(x[t], state)
            outs.append(z)
        ours = model(x)
    theirs = torch.stack(outs)
    assert 0 < ours.mean() < 1
    assert torch.equal(theirs, ours)


def test_snntorch_imports_a_spikeweave_export_with_the_same_spikes():
    _peer("snntorch")
    from snntorch.import_nir import import_from_nir

    model = _peer_mlp(decay_input=False)  # snnTorch: mem = β·mem + I, i.e. R = τ/dt
    net = import_from_nir(to_nir(model, dt=1e-4, input_shape=(20,)))  # snnTorch fixes dt = 1e-4
    x = _x()
    with torch.no_grad():
        outs = []
        for t in range(x.shape[0]):
            out = net(x[t])
            outs.append(out[0] if isinstance(out, tuple) else out)
        ours = model(x)
    theirs = torch.stack(outs)
    assert 0 < ours.mean() < 1
    assert torch.equal(theirs, ours)


def test_a_nir_file_written_by_snntorch_imports_into_spikeweave(tmp_path):
    _peer("snntorch")
    import make_snntorch_fixture as fx  # beside this file: the same network as the data/ file

    net, x = fx.snntorch_network(), fx.snntorch_input()
    path = fx.write_nir(net, tmp_path / "snntorch.nir")
    ours = load_nir(path, dt=1e-4)  # snnTorch writes tau = dt/(1 − β) with dt = 1e-4
    assert [type(m).__name__ for m in ours] == ["TimeFolded", "LIF", "TimeFolded", "LIF"]
    assert math.isclose(ours[1].tau, 2.0) and not ours[1].decay_input
    theirs = fx.snntorch_spikes(net, x)
    with torch.no_grad():
        spikes = ours(x)
    assert 0 < spikes.mean() < 1
    assert torch.equal(spikes, theirs)


def test_a_nir_file_written_by_norse_imports_into_spikeweave(tmp_path):
    norse = _peer("norse.torch")
    from norse.torch.module.lif_box import LIFBoxCell, LIFBoxParameters

    def cell(n: int) -> nn.Module:  # per-neuron tensors: nir 1.0 refuses Norse's 0-d ones
        p = LIFBoxParameters(
            tau_mem_inv=torch.full((n,), 500.0),
            v_th=torch.ones(n),
            v_leak=torch.zeros(n),
            v_reset=torch.zeros(n),
        )
        return LIFBoxCell(p, dt=1e-3)

    torch.manual_seed(6)
    net = norse.SequentialState(nn.Linear(20, 30), cell(30), nn.Linear(30, 10), cell(10))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(8.0)
    path = tmp_path / "norse.nir"
    nir.write(path, norse.to_nir(net, torch.rand(20), dt=1e-3))
    # Norse 1.1 writes tau = dt/tau_mem_inv = dt·tau (2e-6 s for tau = 2 ms at dt = 1 ms), so
    # with the true dt the importer refuses tau below one step; the file's own scale is dt².
    with pytest.raises(ConfigError) as excinfo:
        load_nir(path, dt=1e-3)
    _one_line_config_error(excinfo, "below one step")
    ours = load_nir(path, dt=1e-6)
    assert math.isclose(ours[1].tau, 2.0, rel_tol=1e-6) and ours[1].decay_input  # float32 file
    x = _x()
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            z, state = net(x[t], state)
            outs.append(z)
        spikes = ours(x)
    assert 0 < spikes.mean() < 1
    assert torch.equal(spikes, torch.stack(outs))


def test_a_nir_file_written_by_snntorch_committed_in_the_repo_imports_into_spikeweave():
    """Runs without snnTorch: a file snnTorch wrote, and the spikes snnTorch gave for it."""
    path = DATA / "snntorch_leaky.nir"
    expected = np.load(DATA / "snntorch_leaky_spikes.npz")
    net = load_nir(path, dt=1e-4)
    with torch.no_grad():
        spikes = net(torch.from_numpy(expected["x"]))
    np.testing.assert_array_equal(spikes.numpy(), expected["spikes"])


def test_a_nir_file_written_before_the_rename_imports_with_the_same_spikes(
    trained, digits_batch, tmp_path
):
    # Files from before the rename differ only in producer strings (the graph's generator and
    # the neurons' metadata key); import reads neither, so they load unchanged.
    graph = nir.read(save_nir(trained, tmp_path / "new.nir", dt=1e-3))
    graph.metadata = {**graph.metadata, "generator": "formername"}
    renamed = 0
    for node in graph.nodes.values():
        if isinstance(node.metadata, dict) and "spikeweave_neuron" in node.metadata:
            node.metadata["formername_neuron"] = node.metadata.pop("spikeweave_neuron")
            renamed += 1
    assert renamed, "the export should mark its neurons"
    path = tmp_path / "old.nir"
    nir.write(path, graph)
    net = load_nir(path)
    x = trained.encode(digits_batch)
    for a, b in zip(_layer_outputs(trained.model, x), _layer_outputs(net, x), strict=True):
        assert torch.equal(a, b)


# -- conventions the peers need, checked without them -----------------------------------------


def test_flatten_is_written_with_dims_from_the_end_that_torch_flatten_reads_alike():
    # nir reads Flatten dims per sample; Norse's and snnTorch's importers hand them to
    # torch.nn.Flatten on a batched step: dims counted from the end name the same axes in both
    model = MLP((2, 4, 4), 3, lambda: sf.LIF(), hidden=(5,), population=1, batch_norm=False)
    graph = to_nir(model.eval(), dt=1e-3, input_shape=(2, 4, 4))
    node = graph.nodes["flatten"]
    assert (int(node.start_dim), int(node.end_dim)) == (-3, -1)
    np.testing.assert_array_equal(node.output_type["output"], [32])
    flat = nn.Flatten(int(node.start_dim), int(node.end_dim))
    assert flat(torch.zeros(7, 2, 4, 4)).shape == (7, 32)  # a peer's batched step
    assert flat(torch.zeros(2, 4, 4)).shape == (32,)  # an unbatched sample


def test_a_flatten_with_per_sample_dims_from_older_files_still_imports():
    flat = nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=1, end_dim=2)
    graph = nir.NIRGraph.from_list(flat)
    net = from_nir(graph)
    assert net(torch.zeros(5, 6, 2, 3, 4)).shape == (5, 6, 2, 12)
    neg = nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=-2, end_dim=-1)
    assert from_nir(nir.NIRGraph.from_list(neg))(torch.zeros(5, 6, 2, 3, 4)).shape == (5, 6, 2, 12)


def _linear_first_mlp(n_in: int = 64, tau_s: float = 2e-4, r: float = 2.0) -> nir.NIRGraph:
    """The layout snnTorch's export_to_nir and Norse's to_nir write: no Flatten, float32."""
    rng = np.random.default_rng(0)

    def lif(n: int) -> nir.LIF:
        f = np.float32
        return nir.LIF(tau=np.full(n, tau_s, f), r=np.full(n, r, f), v_leak=np.zeros(n, f),
                       v_threshold=np.ones(n, f), v_reset=np.zeros(n, f))  # fmt: skip

    w1 = rng.normal(0, 0.4, (30, n_in)).astype(np.float32)
    w2 = rng.normal(0, 0.6, (10, 30)).astype(np.float32)
    return nir.NIRGraph.from_list(
        nir.Affine(weight=w1, bias=np.zeros(30, np.float32)),
        lif(30),
        nir.Affine(weight=w2, bias=np.zeros(10, np.float32)),
        lif(10),
    )


def test_import_run_takes_a_linear_first_mlp_as_the_peers_write_it(tmp_path, digits_batch):
    from spikeweave.export import import_run

    path = tmp_path / "peer.nir"
    nir.write(path, _linear_first_mlp())
    out = import_run(path, tmp_path / "run", dataset="digits", steps=4, dt=1e-4)
    run = load_run(out)
    assert type(run.model.flatten.module) is nn.Flatten  # the run flattens the 1×8×8 images
    x = run.encode(digits_batch)
    with torch.no_grad():
        theirs = load_nir(path, dt=1e-4)(x.reshape(*x.shape[:2], 64))
        ours = nn.Sequential(*list(run.model)[:-1])(x)  # before the (population 1) readout
    assert 0 < theirs.mean() < 1
    assert torch.equal(ours, theirs)
    assert 0 <= run.evaluate("test")["accuracy"] <= 1


def test_import_run_refuses_a_linear_first_mlp_for_another_input_size_in_one_line(tmp_path):
    from spikeweave.export import import_run

    path = tmp_path / "peer.nir"
    nir.write(path, _linear_first_mlp(n_in=8))
    with pytest.raises(ConfigError) as excinfo:
        import_run(path, tmp_path / "run", dataset="digits", steps=4, dt=1e-4)
    _one_line_config_error(excinfo, "8 inputs", "64 inputs", "--dataset")
    assert not (tmp_path / "run").exists()


def test_cubalif_tau_syn_a_few_ulps_from_dt_imports_like_r_does():
    # Norse at dt = 1e-3 writes tau_syn = dt·dt as float32: 1.0000001e-06, not 1e-06
    f = np.float32
    cuba = nir.CubaLIF(
        tau_syn=np.full(3, 1e-6, f),
        tau_mem=np.full(3, 2e-6, f),
        r=np.ones(3, f),
        v_leak=np.zeros(3, f),
        v_threshold=np.ones(3, f),
        w_in=np.ones(3, f),
    )
    assert float(cuba.tau_syn[0]) != 1e-6 and math.isclose(cuba.tau_syn[0] / 1e-6, 1, rel_tol=1e-6)
    net = from_nir(nir.NIRGraph.from_list(cuba), dt=1e-6)
    assert [type(m).__name__ for m in net] == ["LIF"] and net[0].decay_input
    cuba.tau_syn = np.full(3, 1.5e-6, f)
    with pytest.raises(ConfigError) as excinfo:
        from_nir(nir.NIRGraph.from_list(cuba), dt=1e-6)
    msg = _one_line_config_error(excinfo, "tau_syn = 1.5", "tau_syn = dt")
    assert "tau_syn = 1 steps" not in msg


@pytest.mark.parametrize(
    ("peer", "model", "dt", "words"),
    [
        ("snntorch", nn.Sequential(sf.LIF(tau=2.0)), 1e-3, ("dt = 0.001", "--dt 1e-4")),
        ("snntorch", nn.Sequential(sf.IF()), 1e-4, ("IF", "R = 1")),
        ("snntorch", nn.Sequential(sf.LIF(v_reset=-0.5)), 1e-4, ("v_reset", "v_leak")),
        ("norse", nn.Sequential(sf.LIF(decay_input=False)), 1e-3, ("R", "decay_input=True")),
        ("norse", nn.Sequential(sf.IF(v_reset=0.5)), 1e-3, ("drops v_reset",)),
        (
            "norse",
            nn.Sequential(TimeFolded(nn.AvgPool2d(2)), sf.LIF()),
            1e-3,
            ("AvgPool2d", "SumPool2d"),
        ),
    ],
)
def test_export_for_a_peer_refuses_what_it_would_load_differently(tmp_path, peer, model, dt, words):
    shape = (1, 4, 4) if isinstance(model[0], TimeFolded) else (3,)
    with pytest.raises(ConfigError) as excinfo:
        save_nir(model, tmp_path / "m.nir", dt=dt, input_shape=shape, peer=peer)
    _one_line_config_error(excinfo, *words)
    assert not (tmp_path / "m.nir").exists()
    save_nir(model, tmp_path / "m.nir", dt=dt, input_shape=shape)  # plain NIR: no peer limits


def test_export_for_snntorch_defaults_dt_and_bad_choices_are_one_line(trained, tmp_path):
    from spikeweave.cli import app as main_app

    runner = CliRunner()
    path = tmp_path / "s.nir"
    res = runner.invoke(_cli(), ["export", str(trained.path), str(path), "--for", "snntorch"])
    assert res.exit_code == 0, res.output
    assert float(nir.read(path).metadata["dt"]) == 1e-4 and "import_from_nir" in res.output
    for args, words in (
        (["--for", "lava"], ("--for", "norse")),
        ([], ("--dt",)),
    ):
        res = runner.invoke(main_app, ["export", str(trained.path), str(tmp_path / "x.nir"), *args])
        assert isinstance(res.exception, ConfigError), res.output
        assert all(w in str(res.exception) for w in words) and "\n" not in str(res.exception)
    assert not (tmp_path / "x.nir").exists()
