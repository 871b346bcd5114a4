"""Device, precision, data loading and determinism options (training/device.py and their use).

The CPU tests run everywhere; tests marked ``cuda`` skip, with the reason, without a GPU.
"""

import json
from dataclasses import replace

import pytest
import torch
from cli_run import run_main

from spikeweave.checkpoint_file import load_checkpoint
from spikeweave.errors import ConfigError
from spikeweave.training import RunDir, TrainConfig, Trainer, load_run
from spikeweave.training.assembly import assemble
from spikeweave.training.device import (
    autocast,
    deterministic_algorithms,
    resolve_device,
)
from spikeweave.training.evaluation import encode_batch
from spikeweave.training.methods import StepContext
from spikeweave.training.run import write_checkpoint

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    _no_cuda(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_is_the_current_gpu_when_cuda_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_asking_for_cuda_without_it_is_a_one_line_config_error(monkeypatch, spec):
    _no_cuda(monkeypatch)
    with pytest.raises(ConfigError, match="CUDA is not available") as info:
        resolve_device(spec)
    assert "\n" not in str(info.value)


def test_a_gpu_index_beyond_the_count_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="has 1 GPU"):
        resolve_device("cuda:3")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"device": "gpu"}, "unknown device"),
        ({"device": "cuda:x"}, "unknown device"),
        ({"precision": "fp8"}, "unknown precision"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_config_refuses_bad_device_precision_and_workers(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values).validate()


def test_fp16_is_refused_on_the_cpu_before_any_data_is_read():
    cfg = TrainConfig(dataset="digits", device="cpu", precision="fp16")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        assemble(cfg)


@pytest.mark.parametrize("command", [["train", "--dataset", "digits"], ["eval", "RUN"]])
def test_cli_on_cuda_without_it_exits_2_with_one_line(monkeypatch, tmp_path, command):
    _no_cuda(monkeypatch)
    if command[0] == "eval":
        command = ["eval", str(_gpu_run(tmp_path / "runs")[0])]
    args = [*command, "--device", "cuda"]
    if command[0] == "train":
        args += ["--out-dir", str(tmp_path)]
    code, _, err = run_main(*args)
    assert code == 2
    assert err.strip().startswith("error: device 'cuda' asked for, but CUDA is not available")
    assert len(err.strip().splitlines()) == 1
    if command[0] == "train":
        assert not any(tmp_path.iterdir())  # refused before a run directory was made


@pytest.mark.slow
def test_bf16_cpu_run_learns_and_records_device_and_precision(tmp_path, one_thread):
    cfg = TrainConfig(
        dataset="digits", model="mlp", hidden=[64], epochs=3, precision="bf16", device="cpu",
        out_dir=str(tmp_path), lr=5e-3, plots=False,
    )  # fmt: skip
    trainer = Trainer(cfg, progress=False)
    summary = trainer.fit()
    assert summary["precision"] == "bf16" and summary["device"] == "cpu"
    assert summary["device_name"]
    assert summary["config"]["precision"] == "bf16"
    assert summary["test_accuracy"] > 0.5  # chance is 0.1
    rows = [json.loads(x) for x in (trainer.run_dir / RunDir.METRICS).read_text().splitlines()]
    assert all(0 <= r["data_wait_s"] <= r["train_time_s"] for r in rows)
    # a reloaded bf16 run evaluates in bf16 and reproduces the logged accuracy
    assert load_run(trainer.run_dir).evaluate("test")["accuracy"] == summary["test_accuracy"]


def test_bf16_autocast_reaches_the_neurons_in_bf16_on_the_cpu():
    parts = assemble(TrainConfig(dataset="digits"), with_data=True)
    seen = []
    neuron = next(m for m in parts.model.modules() if type(m).__name__ == "LIF")
    neuron.register_forward_hook(lambda m, i, o: seen.append(i[0].dtype))
    x = torch.rand(4, 1, 8, 8)
    with autocast(torch.device("cpu"), "bf16"):
        parts.model(encode_batch(parts.config, parts.task.spec, x))
    assert seen == [torch.bfloat16]


@pytest.mark.slow
def test_worker_processes_keep_the_data_order_and_the_numbers(tmp_path, one_thread):
    base = TrainConfig(dataset="digits", model="mlp", hidden=[32], epochs=2, plots=False,
                       out_dir=str(tmp_path))  # fmt: skip
    runs = [
        Trainer(replace(base, num_workers=n), progress=False).fit()["train_loss"] for n in (0, 2)
    ]
    assert runs[0] == runs[1]


def _gpu_run(tmp_path):
    """A CPU run whose checkpoint is rewritten as a GPU run writes it: config device cuda."""
    cfg = TrainConfig(dataset="digits", model="mlp", hidden=[16], epochs=1, plots=False,
                      out_dir=str(tmp_path))  # fmt: skip
    trainer = Trainer(cfg, progress=False)
    summary = trainer.fit()
    gpu = replace(trainer.parts, config=replace(trainer.config, device="cuda"))
    path = trainer.run_dir / RunDir.CHECKPOINT
    write_checkpoint(path, gpu, trainer.epoch, trainer.history, trainer.wall_time_s)
    return trainer.run_dir, summary


@pytest.mark.slow
def test_a_run_recorded_on_a_gpu_loads_evaluates_and_resumes_on_the_cpu(tmp_path, monkeypatch):
    _no_cuda(monkeypatch)
    run_dir, summary = _gpu_run(tmp_path)
    run = load_run(run_dir)  # default: the CPU, wherever it trained
    assert run.device == torch.device("cpu")
    assert run.evaluate("test")["accuracy"] == summary["test_accuracy"]
    with pytest.raises(ConfigError, match="CUDA is not available"):
        Trainer.resume(run_dir, progress=False)  # the run's own device is not here: said so
    trainer = Trainer.resume(run_dir, progress=False, device="cpu", epochs=2)
    assert trainer.epoch == 1 and trainer.config.device == "cpu"
    assert trainer.fit()["epochs"] == 2


@pytest.mark.slow
def test_checkpoint_tensors_are_written_from_cpu_copies(tmp_path, monkeypatch):
    run_dir, _ = _gpu_run(tmp_path)
    moved = []
    original = torch.Tensor.cpu

    def spy(self, *args, **kwargs):
        moved.append(self.shape)
        return original(self, *args, **kwargs)

    run = load_run(run_dir)
    monkeypatch.setattr(torch.Tensor, "cpu", spy)
    write_checkpoint(tmp_path / "again.safetensors", run)
    assert len(moved) >= len(run.model.state_dict())


def test_deterministic_algorithms_are_on_inside_and_restored_after():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.slow
def test_a_deterministic_run_gives_the_same_numbers_twice(tmp_path, one_thread):
    cfg = TrainConfig(
        dataset="digits", model="mlp", hidden=[16], epochs=1, deterministic=True,
        out_dir=str(tmp_path), plots=False,
    )  # fmt: skip
    a, b = (Trainer(cfg, progress=False).fit() for _ in range(2))
    assert a["train_loss"] == b["train_loss"] and a["test_accuracy"] == b["test_accuracy"]


METHOD_CONFIGS = {
    "bptt": {},
    "na": {},
    "noisy": {"pool": "avg", "neuron": "if", "reset": "soft"},
    "bioleaf": {"model": "mlp", "hidden": [16]},
    "adv-train": {},
    "sampler": {"task": "reconstruction"},
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", sorted(METHOD_CONFIGS))
def test_every_method_takes_one_step_on_the_device(method, device, one_thread):
    cfg = TrainConfig(dataset="digits", method=method, batch_size=8, device=device)
    cfg = replace(cfg, **METHOD_CONFIGS[method])
    parts = assemble(cfg)
    where = torch.device(device)
    assert all(p.device.type == where.type for p in parts.model.parameters())
    x, y = next(iter(torch.utils.data.DataLoader(parts.train_set, batch_size=8)))
    x, y = x.to(where), y.to(where)
    before = [p.detach().clone() for p in parts.model.parameters()]
    ctx = StepContext(
        parts.model, parts.optimizer,
        lambda b: parts.model(encode_batch(parts.config, parts.task.spec, b)),
        parts.method.loss(parts.task), cfg.grad_clip, parts.task,
    )  # fmt: skip
    parts.model.train()
    out, loss = parts.method.train_step(ctx, x, parts.task.target(x, y))
    assert out.device.type == where.type and torch.isfinite(loss)
    after = list(parts.model.parameters())
    assert any(not torch.equal(a.detach(), b) for a, b in zip(after, before, strict=True))


@pytest.mark.parametrize("device", DEVICES)
def test_every_attack_and_mesa_run_with_model_and_data_on_the_device(device, one_thread):
    from spikeweave.security.attacks import robust_accuracy
    from spikeweave.security.mesa import (
        FinetuneOptions,
        MesaOptions,
        finetune,
        reverse_engineer_trigger,
        sample_triggers,
        train_generator,
    )

    torch.manual_seed(0)
    where = torch.device(device)
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).to(where)
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % 3
    for name, options in (("fgsm", {}), ("pgd", {"steps": 2}), ("square", {"queries": 4})):
        acc = robust_accuracy(name, clf, x, y, 0.1, batch_size=6, **options)
        assert 0 <= acc <= 1
    xd, yd = x.to(where), y.to(where)
    opts = MesaOptions(batch_size=4, trigger_size=3, hidden=8, mine_hidden=8)
    g, hist = train_generator(clf, xd, yd, 1, 0.9, opts, seed=0, steps=2)
    assert len(hist["hinge"]) == 2
    trig = sample_triggers([g], 5, torch.Generator().manual_seed(0))
    assert trig.device.type == where.type
    assert reverse_engineer_trigger(clf, xd, yd, 1, steps=2).device.type == where.type
    tuned = finetune(clf, xd, yd, lambda n, gen: trig[:n], FinetuneOptions(epochs=1), 0)
    assert next(tuned.parameters()).device.type == where.type


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_run_records_the_gpu_and_precision(tmp_path, precision):
    cfg = TrainConfig(
        dataset="digits", epochs=1, device="cuda", precision=precision, out_dir=str(tmp_path),
        plots=False,
    )  # fmt: skip
    summary = Trainer(cfg, progress=False).fit()
    assert summary["device"].startswith("cuda:")
    assert summary["device_name"] == torch.cuda.get_device_name(0)
    assert summary["precision"] == precision and summary["test_accuracy"] > 0.3


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_reaches_the_triton_kernel(dtype):
    from spikeweave.functional import triton_lif

    if not triton_lif.available():
        pytest.skip("triton is not installed")
    parts = assemble(TrainConfig(dataset="digits", device="cuda"), with_data=False)
    x = torch.rand(4, 1, 8, 8, device="cuda")
    from spikeweave.functional import fused

    chosen = []
    original = fused.select_backend
    fused.select_backend = lambda *a, **k: chosen.append(original(*a, **k)) or chosen[-1]
    try:
        with autocast(torch.device("cuda"), "bf16" if dtype == torch.bfloat16 else "fp16"):
            parts.model(encode_batch(parts.config, parts.task.spec, x)).sum().backward()
    finally:
        fused.select_backend = original
    assert chosen and set(chosen) == {"triton"}


@pytest.mark.cuda
def test_a_cuda_run_loads_on_the_cpu_and_back(tmp_path):
    cfg = TrainConfig(dataset="digits", epochs=1, device="cuda", out_dir=str(tmp_path), plots=False)
    trainer = Trainer(cfg, progress=False)
    summary = trainer.fit()
    cpu = load_run(trainer.run_dir, device="cpu")
    gpu = load_run(trainer.run_dir, device="cuda")
    assert next(gpu.model.parameters()).is_cuda
    assert abs(cpu.evaluate()["accuracy"] - summary["test_accuracy"]) < 0.02
    assert gpu.evaluate()["accuracy"] == summary["test_accuracy"]
    resumed = Trainer.resume(trainer.run_dir, progress=False, device="cpu", epochs=2)
    assert resumed.fit()["device"] == "cpu"


@pytest.mark.parametrize("method", sorted(METHOD_CONFIGS))
def test_every_method_takes_one_bf16_autocast_step_on_the_cpu(method, one_thread):
    cfg = replace(TrainConfig(dataset="digits", method=method, batch_size=8, device="cpu"),
                  precision="bf16", **METHOD_CONFIGS[method])  # fmt: skip
    parts = assemble(cfg)
    x, y = next(iter(torch.utils.data.DataLoader(parts.train_set, batch_size=8)))
    before = [p.detach().clone() for p in parts.model.parameters()]
    ctx = StepContext(
        parts.model, parts.optimizer,
        lambda b: parts.model(encode_batch(parts.config, parts.task.spec, b)),
        parts.method.loss(parts.task), cfg.grad_clip, parts.task,
    )  # fmt: skip
    parts.model.train()
    with autocast(torch.device("cpu"), "bf16"):
        out, loss = parts.method.train_step(ctx, x, parts.task.target(x, y))
    assert torch.isfinite(loss.float())
    after = list(parts.model.parameters())
    assert all(p.dtype == torch.float32 for p in after)  # autocast lowers compute, not weights
    assert any(not torch.equal(a.detach(), b) for a, b in zip(after, before, strict=True))


def _scaler_runs(monkeypatch, **scaler_kw):
    """The trainer's fp16 scaler replaced by an enabled CPU ``GradScaler`` (the CPU has no
    fp16 training path, but the scaler and its checkpointing are the same code)."""
    import spikeweave.training.trainer as trainer_module

    monkeypatch.setattr(
        trainer_module, "grad_scaler", lambda device, precision: torch.amp.GradScaler(
            "cpu", **scaler_kw
        ),
    )  # fmt: skip


def test_the_grad_scaler_state_is_checkpointed_and_restored_on_resume(
    tmp_path, monkeypatch, one_thread
):
    _scaler_runs(monkeypatch, init_scale=2.0**10, growth_interval=3)
    cfg = TrainConfig(dataset="digits", model="mlp", hidden=[16], epochs=1, plots=False,
                      out_dir=str(tmp_path))  # fmt: skip
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    saved = trainer.scaler.state_dict()
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3).state_dict()
    assert saved != fresh  # the steps moved the scale and the growth tracker
    resumed = Trainer.resume(trainer.run_dir, progress=False, epochs=2)
    assert resumed.scaler.state_dict() == saved


def test_a_checkpoint_without_scaler_state_resumes_with_a_fresh_scaler(tmp_path, monkeypatch):
    cfg = TrainConfig(dataset="digits", model="mlp", hidden=[16], epochs=1, plots=False,
                      out_dir=str(tmp_path))  # fmt: skip
    trainer = Trainer(cfg, progress=False)  # fp32: no scaler, so none is written
    trainer.fit()
    _, meta = load_checkpoint(trainer.run_dir / RunDir.CHECKPOINT)
    assert "grad_scaler" not in meta  # files of runs without a scaler are unchanged
    _scaler_runs(monkeypatch, init_scale=2.0**7)
    resumed = Trainer.resume(trainer.run_dir, progress=False, epochs=2)
    assert (
        resumed.scaler.state_dict() == torch.amp.GradScaler("cpu", init_scale=2.0**7).state_dict()
    )


@pytest.mark.parametrize(
    "state, message",
    [
        ({"scale": -1.0}, "scale = -1.0, out of range"),
        ({"scale": float("inf")}, "out of range"),
        ({"growth_interval": 2.5}, "expected an integer"),
        ({"_growth_tracker": "3"}, "expected a number"),
        ({"extra": 1}, "is not a GradScaler state"),
    ],
)
def test_a_bad_scaler_state_in_a_checkpoint_is_a_one_line_error(tmp_path, state, message):
    from spikeweave.errors import CheckpointError
    from spikeweave.nested_state import flatten_state
    from spikeweave.training.run import load_scaler_state

    scaler = torch.amp.GradScaler("cpu")
    good = scaler.state_dict()
    _, structure = flatten_state("grad_scaler", {**good, **state})
    with pytest.raises(CheckpointError, match=message) as info:
        load_scaler_state(scaler, {"grad_scaler": structure}, tmp_path / "checkpoint")
    assert "\n" not in str(info.value)
    assert scaler.state_dict() == good  # nothing was taken


@pytest.mark.cuda
def test_an_fp16_cuda_run_resumed_after_a_crash_ends_with_the_uninterrupted_weights(tmp_path):
    from spikeweave.training import Callback

    class Crash(Callback):
        def on_batch_end(self, trainer, epoch, batch, loss):
            if epoch == 2 and batch == 3:
                raise RuntimeError("crash")

    cfg = TrainConfig(
        dataset="digits", model="mlp", hidden=[32], epochs=2, device="cuda", precision="fp16",
        deterministic=True, out_dir=str(tmp_path), plots=False,
    )  # fmt: skip
    full = Trainer(cfg, run_dir=tmp_path / "full", progress=False)
    full.fit()
    crashing = Trainer(cfg, run_dir=tmp_path / "crash", progress=False, callbacks=[Crash()])
    with pytest.raises(RuntimeError, match="crash"):
        crashing.fit()
    resumed = Trainer.resume(tmp_path / "crash", progress=False)
    assert resumed.scaler.state_dict() == crashing_state(tmp_path / "crash")
    resumed.fit()
    assert resumed.scaler.state_dict() == full.scaler.state_dict()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)


def crashing_state(run_dir):
    """The scaler state in ``run_dir``'s checkpoint (the end of its last finished epoch)."""
    from spikeweave.nested_state import unflatten_state

    _, meta = load_checkpoint(run_dir / RunDir.CHECKPOINT)
    return unflatten_state({}, meta["grad_scaler"])


@pytest.mark.cuda
def test_import_checks_the_graph_on_the_gpu(tmp_path):
    pytest.importorskip("nir")
    from spikeweave.export.runs import export_run, import_run

    cfg = TrainConfig(dataset="digits", model="mlp", hidden=[16], batch_norm=False,
                      reset="hard", epochs=1, out_dir=str(tmp_path), plots=False)  # fmt: skip
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    path = export_run(trainer.run_dir, tmp_path / "m.nir", dt=1e-3)
    out = import_run(path, tmp_path / "imported", device="cuda")
    assert load_run(out, device="cuda").evaluate()["accuracy"] == pytest.approx(
        load_run(trainer.run_dir).evaluate()["accuracy"], abs=0.02
    )


@pytest.mark.cuda
def test_mesa_finetuning_with_a_device_sampler_stays_on_the_gpu():
    from spikeweave.security.mesa import FinetuneOptions, finetune

    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).cuda()
    x, y = torch.rand(12, 1, 8, 8, device="cuda"), torch.arange(12, device="cuda") % 3
    trig = torch.rand(4, 1, 3, 3, device="cuda")
    tuned = finetune(clf, x, y, lambda n, gen: trig[:n], FinetuneOptions(epochs=1), 0)
    assert next(tuned.parameters()).is_cuda
