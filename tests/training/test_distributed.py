"""Multi-process data-parallel training (gloo on loopback): the same weights as one process on
the combined batch, files written once, and a killed process ends the job with an error."""

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
from spikeweave.training.distributed import Distributed, from_environment


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


def _train(rank: int, world: int, port: int, out: str, split_run: bool = False) -> None:
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
    dist = from_environment(timeout_s=60)
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


def _spawn(world: int, out: Path, split_run: bool = False) -> None:
    mp.start_processes(
        _train, args=(world, _free_port(), str(out), split_run), nprocs=world, start_method="spawn"
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
