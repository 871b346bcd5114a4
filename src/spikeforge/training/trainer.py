"""The training engine: data order, optimisation, evaluation, checkpoints and run records.

A run directory holds ``config.json``, ``metrics.jsonl`` (one line per epoch),
``checkpoint.safetensors`` (latest epoch, for ``resume``), ``summary.json``,
``activity.safetensors`` (spikes of one test batch) and PNG plots.

Determinism: the model is initialised from ``seed``; every epoch reseeds torch's global RNG
and the shuffling generator from ``(seed, epoch)``, so a resumed run replays exactly what an
uninterrupted run would have done.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from .. import data as datasets
from .. import encoding
from ..errors import CheckpointError, ConfigError, TrainingError
from ..layers import NeuronFactory
from ..models import build_model
from ..neurons import IF, KLIF, LIF, SpikingNeuron
from ..surrogate import get_surrogate
from .checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from .config import TrainConfig
from .methods import StepContext, make_method

__all__ = ["Trainer", "neuron_factory", "model_from_config", "versions", "record_activity"]

CHECKPOINT = "checkpoint.safetensors"
ACTIVITY = "activity.safetensors"


def versions() -> dict[str, str]:
    """Versions of everything that can change a run's numbers."""
    from .. import __version__

    return {
        "spikeforge": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),
    }


def neuron_factory(cfg: TrainConfig) -> NeuronFactory | None:
    """A zero-argument neuron constructor from the config; ``None`` for the ANN baselines."""
    if not cfg.spiking:
        return None
    surrogate = get_surrogate(cfg.surrogate, cfg.alpha)
    common = dict(
        threshold=cfg.threshold,
        v_reset=cfg.v_reset,
        reset=cfg.reset,
        surrogate=surrogate,
        detach_reset=cfg.detach_reset,
    )
    if cfg.neuron == "lif":
        return lambda: LIF(tau=cfg.tau, decay_input=cfg.decay_input, **common)
    if cfg.neuron == "klif":
        return lambda: KLIF(tau=cfg.tau, **common)
    if cfg.neuron == "if":
        return lambda: IF(**common)
    raise ConfigError(f"unknown neuron {cfg.neuron!r}")  # pragma: no cover (validated)


def model_from_config(cfg: TrainConfig) -> nn.Module:
    """The network the config describes, initialised from ``cfg.seed``."""
    info = datasets.info(cfg.dataset)
    torch.manual_seed(cfg.seed)
    return build_model(
        cfg.architecture,
        info.input_shape,
        info.num_classes,
        neuron_factory(cfg),
        population=cfg.population,
        dropout=cfg.dropout,
    )


def _loss_fn(
    cfg: TrainConfig, num_classes: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if not cfg.spiking:
        return lambda out, y: F.cross_entropy(out.mean(0), y)
    if cfg.loss == "ce":
        return lambda out, y: F.cross_entropy(out.mean(0) * cfg.rate_scale, y)
    return lambda out, y: F.mse_loss(out.mean(0), F.one_hot(y, num_classes).to(out.dtype))


def record_activity(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Spikes ``[T, B, ...]`` (uint8) of every spiking neuron for the encoded input ``x``."""
    spikes: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, SpikingNeuron):

            def hook(_m, _inp, out, name=name):
                s = out[0] if isinstance(out, tuple) else out
                spikes[name] = s.detach().to(torch.uint8).cpu()

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return spikes


class Trainer:
    """Trains one configuration and records it in a run directory.

    >>> summary = Trainer(TrainConfig(dataset="digits", epochs=3)).fit()
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        progress: bool = True,
        epoch_metrics: Sequence[Callable[[nn.Module], dict[str, float]]] = (),
    ) -> None:
        """Args:
        config: the run's settings (validated here).
        run_dir: where to write; default a new folder under ``config.out_dir``.
        progress: show a progress bar.
        epoch_metrics: functions of the model whose dicts are added to every epoch's metrics
            row (e.g. a learnable neuron parameter to trace).
        """
        self.config = config.validate()
        self.epoch_metrics = list(epoch_metrics)
        self.progress = progress
        info = datasets.info(config.dataset)
        self.num_classes = info.num_classes
        self.temporal = info.temporal
        options = {"root": config.data_root or None}
        if info.temporal:
            options["frames"] = config.steps  # event recordings are binned into T frames
        self.train_set: Dataset = datasets.load(config.dataset, "train", **options)
        self.test_set: Dataset = datasets.load(config.dataset, "test", **options)
        self.method = make_method(config.method)
        self.method.configure(config)
        self.model = self.method.prepare(model_from_config(config))
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.steps_per_epoch = math.ceil(len(self.train_set) / config.batch_size)
        self.scheduler = self._make_scheduler()
        self.loss = _loss_fn(config, self.num_classes)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.wall_time_s = 0.0
        self.run_dir = Path(run_dir) if run_dir is not None else self._new_run_dir()
        self._on_batch: Callable[[int, int], None] | None = None

    # -- construction -------------------------------------------------------------------
    def _make_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        cfg = self.config
        if cfg.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=cfg.epochs * self.steps_per_epoch
            )
        if cfg.schedule == "exponential":
            # Applied per batch so that every schedule steps at the same place in the loop.
            gamma = cfg.gamma ** (1.0 / self.steps_per_epoch)
            return torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=gamma)
        return torch.optim.lr_scheduler.ConstantLR(self.optimizer, factor=1.0, total_iters=0)

    def _new_run_dir(self) -> Path:
        cfg = self.config
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        neuron = cfg.neuron if cfg.spiking else "relu"
        name = f"{cfg.dataset}-{cfg.model}-{neuron}-T{cfg.effective_steps}-s{cfg.seed}-{stamp}"
        base = Path(cfg.out_dir) / name
        run_dir, n = base, 1
        while run_dir.exists():
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
        return run_dir

    # -- one epoch ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model on a batch: static ``[B, ...]`` is encoded over the configured steps;
        a temporal dataset's ``[B, T, ...]`` is made time-major."""
        return self.model(self.encode(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The model's time-major input ``[T, B, ...]`` for a batch from the dataset."""
        if self.temporal:
            return x.transpose(0, 1)
        return encoding.encode(self.config.encoder, x, self.config.effective_steps)

    def _epoch_seed(self, epoch: int) -> int:
        return self.config.seed * 1_000_003 + epoch

    def train_epoch(
        self, epoch: int, progress_cb: Callable[[int, float, float], None] | None = None
    ) -> dict[str, float]:
        """Train one epoch (1-based ``epoch``); returns running loss and accuracy."""
        seed = self._epoch_seed(epoch)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        loader = DataLoader(
            self.train_set, batch_size=self.config.batch_size, shuffle=True, generator=gen
        )
        ctx = StepContext(
            self.model, self.optimizer, self.forward, self.loss, self.config.grad_clip
        )
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for i, (x, y) in enumerate(loader):
            out, loss = self.method.train_step(ctx, x, y)
            self.scheduler.step()
            if not math.isfinite(float(loss)):
                raise TrainingError(
                    f"loss became {float(loss)} at epoch {epoch}, batch {i}; lower the lr "
                    f"(now {self.config.lr}) or enable grad_clip"
                )
            total_loss += float(loss) * len(y)
            correct += int((out.mean(0).argmax(-1) == y).sum())
            seen += len(y)
            if progress_cb is not None:
                progress_cb(i + 1, total_loss / seen, correct / seen)
            if self._on_batch is not None:
                self._on_batch(epoch, i)
        return {"train_loss": total_loss / seen, "train_accuracy": correct / seen}

    @torch.no_grad()
    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Loss and accuracy on ``split`` with the model in eval mode."""
        dataset = self.test_set if split == "test" else self.train_set
        loader = DataLoader(dataset, batch_size=self.config.eval_batch_size)
        self.model.eval()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in loader:
            out = self.forward(x)
            total_loss += float(self.loss(out, y)) * len(y)
            correct += int((out.mean(0).argmax(-1) == y).sum())
            seen += len(y)
        return {f"{split}_loss": total_loss / seen, f"{split}_accuracy": correct / seen}

    # -- the whole run --------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, writing metrics, checkpoints, summary and plots."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        self._rewrite_metrics()
        with _progress(self.progress) as bar:
            task = bar.add_task("train", total=self.steps_per_epoch, stats="") if bar else None
            for epoch in range(self.epoch + 1, self.config.epochs + 1):
                start = time.perf_counter()
                if bar is not None:
                    bar.reset(
                        task,
                        total=self.steps_per_epoch,
                        description=f"epoch {epoch}/{self.config.epochs}",
                    )

                def cb(i: int, loss: float, acc: float) -> None:
                    bar.update(task, completed=i, stats=f"loss {loss:.3f} acc {acc:.1%}")

                row: dict[str, Any] = {"epoch": epoch}
                row.update(self.train_epoch(epoch, cb if bar is not None else None))
                row.update(self.evaluate("test"))
                for fn in self.epoch_metrics:
                    row.update(fn(self.model))
                row["lr"] = self.optimizer.param_groups[0]["lr"]
                row["epoch_time_s"] = time.perf_counter() - start
                self.wall_time_s += row["epoch_time_s"]
                self.epoch = epoch
                self.history.append(row)
                self.save_checkpoint()
                with (self.run_dir / "metrics.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                if bar is not None:
                    bar.console.print(
                        f"epoch {epoch:3d}  train loss {row['train_loss']:.4f} "
                        f"acc {row['train_accuracy']:.2%}  test acc {row['test_accuracy']:.2%}  "
                        f"({row['epoch_time_s']:.1f} s)"
                    )
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Write ``summary.json``, the activity record and the plots; return the summary."""
        from ..plots import firing_rates, plot_run

        x, _ = next(iter(DataLoader(self.test_set, batch_size=64)))
        self.model.eval()
        spikes = record_activity(self.model, self.encode(x))
        if spikes:
            from safetensors.torch import save_file

            save_file(
                {k: v.contiguous() for k, v in spikes.items()},
                str(self.run_dir / ACTIVITY),
                metadata={"layers": json.dumps(list(spikes))},
            )
        last = self.history[-1] if self.history else {}
        summary = {
            "test_accuracy": last.get("test_accuracy"),
            "best_test_accuracy": max((r["test_accuracy"] for r in self.history), default=None),
            "train_accuracy": last.get("train_accuracy"),
            "test_loss": last.get("test_loss"),
            "epochs": self.epoch,
            "wall_time_s": self.wall_time_s,
            "seed": self.config.seed,
            "spiking": self.config.spiking,
            "steps": self.config.effective_steps,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "firing_rates": firing_rates(spikes) if spikes else {},
            "config": self.config.to_dict(),
            "versions": versions(),
            "run_dir": str(self.run_dir),
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_run(self.run_dir)
        return summary

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write model, optimizer and scheduler state atomically (default: the run's latest)."""
        tensors = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        opt_tensors, opt_struct = flatten_state("optimizer", self.optimizer.state_dict())
        sched_tensors, sched_struct = flatten_state("scheduler", self.scheduler.state_dict())
        tensors.update(opt_tensors)
        tensors.update(sched_tensors)
        meta = {
            "kind": "spikeforge-training-state",
            "epoch": self.epoch,
            "config": self.config.to_dict(),
            "history": self.history,
            "wall_time_s": self.wall_time_s,
            "optimizer": opt_struct,
            "scheduler": sched_struct,
            "versions": versions(),
        }
        return save_checkpoint(Path(path) if path else self.run_dir / CHECKPOINT, tensors, meta)

    @classmethod
    def resume(cls, run_dir: str | Path, progress: bool = True) -> Trainer:
        """Continue the run in ``run_dir`` from its latest checkpoint."""
        run_dir = Path(run_dir)
        tensors, meta = load_checkpoint(run_dir / CHECKPOINT)
        if meta.get("kind") != "spikeforge-training-state":
            raise CheckpointError(f"{run_dir / CHECKPOINT} is not a spikeforge training checkpoint")
        trainer = cls(
            TrainConfig.from_dict(meta["config"], source=str(run_dir / CHECKPOINT)),
            run_dir=run_dir,
            progress=progress,
        )
        trainer.load_state(tensors, meta)
        return trainer

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore model, optimizer, scheduler and history from a loaded checkpoint."""
        model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
        try:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(unflatten_state(tensors, meta["optimizer"]))
            self.scheduler.load_state_dict(unflatten_state(tensors, meta["scheduler"]))
        except (KeyError, RuntimeError, ValueError) as exc:
            msg = str(exc).splitlines()[0]
            raise CheckpointError(
                f"checkpoint does not match the configured model: {msg}"
            ) from None
        self.epoch = int(meta["epoch"])
        self.history = list(meta["history"])
        self.wall_time_s = float(meta["wall_time_s"])

    def _rewrite_metrics(self) -> None:
        # Lines written after the last checkpoint (a crash between the two) are dropped.
        with (self.run_dir / "metrics.jsonl").open("w") as fh:
            for row in self.history:
                fh.write(json.dumps(row) + "\n")


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NullContext()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
    )
