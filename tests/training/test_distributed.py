"""Multi-process data-parallel training (gloo on loopback): the same weights as one process on
the combined batch, files written once, and a killed process ends the job with an error; the
backend and device choice for GPUs (a pure function, tested with fake device counts), and
synchronised BatchNorm."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from spikeweave.cli import peer_failure_line, peer_failure_message
from spikeweave.errors import ConfigError
from spikeweave.training.distributed import (
    Distributed,
    choose_placement,
    from_environment,
    sync_batchnorm,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    from torch.utils.data import TensorDataset

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(320, 12, generator=gen)
    y = (x[:, :6].sum(1) > x[:, 6:].sum(1)).long()
    return TensorDataset(x, y), TensorDataset(x[:70], y[:70])


def _train(
    rank: int, world: int, port: int, out: str, split_run: bool = False, options=None
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    from spikeweave.training import TrainConfig, Trainer

    cfg = TrainConfig(
        dataset="toy",
        model="mlp",
        hidden=[16],
        batch_norm=False,
        population=1,
        steps=3,
        epochs=2,
        batch_size=32,
        lr=5e-3,
        out_dir=out,
    )
    for key, value in (options or {}).items():
        setattr(cfg, key, value)
    dist = from_environment(timeout_s=60, device=str(getattr(cfg, "device", "cpu")))
    run_dir = Path(out) / "run"
    if split_run:  # stopped after the first epoch, as by a crash, then resumed
        from spikeweave.training import Callback

        class Stop(Callback):
            def on_epoch_start(self, trainer, epoch):
                if epoch == 2:
                    raise KeyboardInterrupt

        first = Trainer(cfg, datasets=_data(), progress=False, run_dir=run_dir,
                        distributed=dist, callbacks=[Stop()])  # fmt: skip
        try:
            first.fit()
        except KeyboardInterrupt:
            pass
        trainer = Trainer.resume(run_dir, datasets=_data(), progress=False)
    else:
        trainer = Trainer(cfg, datasets=_data(), progress=False, run_dir=run_dir,
                          distributed=dist)  # fmt: skip
    summary = trainer.fit()
    state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
    save_file(state, str(Path(out) / f"weights-{rank}.safetensors"))
    (Path(out) / f"acc-{rank}.txt").write_text(repr(summary["test_accuracy"]))
    dist.close()
    assert not torch.distributed.is_initialized()
    dist.close()  # a second close is a no-op
    # This test is about the weights; a clean interpreter exit after a run is the torchrun
    # CLI test's business. Ending the worker here keeps that exit out of this test.
    os._exit(0)


def _spawn(world: int, out: Path, split_run: bool = False, options=None) -> None:
    mp.start_processes(
        _train,
        args=(world, _free_port(), str(out), split_run, options),
        nprocs=world,
        start_method="spawn",
    )


@pytest.mark.slow
def test_two_processes_end_with_the_weights_of_one_process_on_the_combined_batch(tmp_path):
    _spawn(2, tmp_path / "two")
    _spawn(1, tmp_path / "one")
    one = load_file(str(tmp_path / "one" / "weights-0.safetensors"))
    for rank in (0, 1):
        two = load_file(str(tmp_path / "two" / f"weights-{rank}.safetensors"))
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)
    accs = {(tmp_path / d / f"acc-{r}.txt").read_text() for d, r in (("two", 0), ("two", 1))}
    assert accs == {(tmp_path / "one" / "acc-0.txt").read_text()}
    # rank 0 alone wrote the run: one summary, one metrics line per epoch
    files = sorted(p.name for p in (tmp_path / "two" / "run").iterdir())
    assert "summary.json" in files and "checkpoint.safetensors" in files
    assert len((tmp_path / "two" / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    # a two-process run resumed after its first epoch ends where the straight run ended
    _spawn(2, tmp_path / "resumed", split_run=True)
    resumed = load_file(str(tmp_path / "resumed" / "weights-0.safetensors"))
    straight = load_file(str(tmp_path / "two" / "weights-0.safetensors"))
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key


@pytest.mark.slow
def test_a_killed_process_ends_the_job_with_a_one_line_error_not_a_hang(tmp_path):
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}  # fmt: skip
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "spikeweave.cli",
                    "train",
                    "--dataset",
                    "digits",
                    "--model",
                    "mlp",
                    "-T",
                    "2",
                    "--epochs",
                    "100",
                    "--batch-size",
                    "16",
                    "--no-progress",
                    "--out-dir",
                    str(tmp_path),
                ],  # fmt: skip
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("*/checkpoint.safetensors")):
        time.sleep(0.05)
    procs[1].kill()
    procs[1].wait()
    start = time.monotonic()
    _, err = procs[0].communicate(timeout=150)
    assert time.monotonic() - start < 150
    assert procs[0].returncode == 1, err[-2000:]
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: another training process failed or was killed")
    assert "Traceback" not in err


@pytest.mark.slow
def test_torchrun_launches_the_cli_and_one_process_writes_the_run(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "spikeweave.cli",
            "train",
            "--dataset",
            "digits",
            "--model",
            "mlp",
            "-T",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--out-dir",
            str(tmp_path),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("training digits") == 1 and "(2 processes)" in proc.stdout
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file()


def test_outside_torchrun_training_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert from_environment() == Distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_PORT", raising=False)
    from spikeweave.errors import ConfigError

    with pytest.raises(ConfigError, match="launch with torchrun"):
        from_environment()


@pytest.mark.parametrize(
    "message",
    [
        # gloo's words when a peer was stopped (SIGSTOP) past the timeout: capital T
        "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting "
        "120000ms for recv operation to complete",
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:534] Read error: timed out",
        "[../third_party/gloo/gloo/transport/tcp/pair.cc:598] Connection closed by peer",
        "CONNECTION RESET by peer",
    ],
)
def test_a_dead_or_hung_peer_is_recognised_whatever_the_case(message):
    assert peer_failure_message(message)


def test_an_unrelated_error_is_not_taken_for_a_peer_failure():
    assert not peer_failure_message("mat1 and mat2 shapes cannot be multiplied (4x3 and 2x5)")


def test_a_peer_failure_is_reported_in_one_line_without_the_cxx_stack():
    exc = RuntimeError(
        "[gloo/unbound_buffer.cc:81] Timed out waiting 120000ms for recv\n"
        "Exception raised from recv at ../gloo/unbound_buffer.cc:81 (most recent call first):\n"
        "frame #0: c10::Error::Error(...) + 0x96"
    )
    line = peer_failure_line(exc)
    assert line.startswith("error: another training process failed or was killed")
    assert "\n" not in line and "frame #0" not in line and "Timed out waiting" in line


@pytest.mark.slow
def test_batchnorm_makes_two_processes_differ_from_one_without_sync_batchnorm(tmp_path):
    # The README's caveat: each process normalises over its own half of the batch.
    _spawn(2, tmp_path / "two", options={"batch_norm": True})
    _spawn(1, tmp_path / "one", options={"batch_norm": True})
    one = load_file(str(tmp_path / "one" / "weights-0.safetensors"))
    two = load_file(str(tmp_path / "two" / "weights-0.safetensors"))
    assert any(not torch.allclose(two[k], one[k], rtol=1e-4, atol=1e-5) for k in one)


# -- placement: which device and backend each process takes ---------------------------------


@pytest.mark.parametrize(
    ("requested", "local_rank", "local_world", "gpus", "nccl", "expected"),
    [
        ("cpu", 1, 2, 2, True, ("gloo", "cpu")),
        ("auto", 1, 2, 0, True, ("gloo", "cpu")),
        ("auto", 1, 2, 2, True, ("nccl", "cuda:1")),
        ("cuda", 0, 2, 4, True, ("nccl", "cuda:0")),
        ("cuda", 3, 4, 2, True, ("gloo", "cuda:1")),  # four processes share two GPUs
        ("cuda", 1, 2, 2, False, ("gloo", "cuda:1")),  # torch built without NCCL
        ("cuda:1", 0, 2, 2, True, ("gloo", "cuda:1")),  # every process on GPU 1
        ("cuda:1", 0, 1, 2, True, ("nccl", "cuda:1")),
        (" CUDA ", 0, 1, 1, True, ("nccl", "cuda:0")),
    ],
)
def test_choose_placement_gives_each_gpu_process_its_own_gpu_and_nccl_only_then(
    requested, local_rank, local_world, gpus, nccl, expected
):
    assert choose_placement(requested, local_rank, local_world, gpus, nccl) == expected


@pytest.mark.parametrize(
    ("requested", "gpus", "match"),
    [
        ("cuda", 0, "sees no GPU"),
        ("cuda:0", 0, "sees no GPU"),
        ("cuda:2", 2, "cuda:0 to cuda:1"),
        ("gpu", 2, "auto, cpu, cuda or cuda:N"),
        ("cuda:-1", 2, "auto, cpu, cuda or cuda:N"),
    ],
)
def test_choose_placement_refuses_cuda_it_cannot_give_in_one_line(requested, gpus, match):
    with pytest.raises(ConfigError, match=match) as info:
        choose_placement(requested, 0, 2, gpus, True)
    assert "\n" not in str(info.value)


def test_from_environment_puts_local_rank_on_its_gpu_and_joins_nccl(monkeypatch):
    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    monkeypatch.delenv("TORCH_NCCL_BLOCKING_WAIT", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("device", str(d)))
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        dist, "init_process_group", lambda backend, timeout: calls.setdefault("backend", backend)
    )
    placed = from_environment(device="auto")
    assert placed == Distributed(3, 4, active=True, device="cuda:1", backend="nccl")
    assert calls == {"device": "cuda:1", "backend": "nccl"}
    assert os.environ["TORCH_NCCL_BLOCKING_WAIT"] == "1"
    # the same job asked to train on the CPU joins gloo and touches no GPU
    calls.clear()
    assert from_environment(device="cpu").backend == "gloo"
    assert calls == {"backend": "gloo"}


def test_from_environment_refuses_a_local_rank_outside_the_node(monkeypatch):
    for key, value in dict(
        WORLD_SIZE="2", RANK="0", LOCAL_RANK="2", MASTER_ADDR="x", MASTER_PORT="1"
    ).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="LOCAL_RANK 2 is not in"):
        from_environment()


# -- synchronised BatchNorm -----------------------------------------------------------------


def test_sync_batchnorm_converts_batchnorm_and_keeps_the_optimizers_tensors():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    before = [id(t) for t in (*model.parameters(), *model.buffers())]
    out = sync_batchnorm(model, Distributed(0, 2, active=True, device="cuda:0", backend="nccl"))
    assert isinstance(out[1], torch.nn.SyncBatchNorm)
    assert [id(t) for t in (*out.parameters(), *out.buffers())] == before


def test_sync_batchnorm_is_refused_on_cpu_processes_in_one_line(tmp_path):
    from spikeweave.training import TrainConfig, Trainer

    cfg = TrainConfig(
        dataset="toy", model="mlp", hidden=[8], population=1, steps=2, epochs=1,
        batch_size=32, sync_batchnorm=True, out_dir=str(tmp_path),
    )  # fmt: skip
    fake = Distributed(0, 2, active=True, device="cpu", backend="gloo")  # no collective is reached
    with pytest.raises(ConfigError, match="sync_batchnorm needs one GPU per process"):
        Trainer(cfg, datasets=_data(), progress=False, run_dir=tmp_path / "r", distributed=fake)


@pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason="needs two CUDA GPUs",
)
def test_two_gpu_processes_with_sync_batchnorm_end_with_one_processs_weights(tmp_path):
    options = {"batch_norm": True, "sync_batchnorm": True, "device": "cuda"}
    _spawn(2, tmp_path / "two", options=options)
    _spawn(1, tmp_path / "one", options=options)
    one = load_file(str(tmp_path / "one" / "weights-0.safetensors"))
    for rank in (0, 1):
        two = load_file(str(tmp_path / "two" / f"weights-{rank}.safetensors"))
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
