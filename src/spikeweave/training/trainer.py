"""The training engine: data order, the method's steps, evaluation, checkpoints and run records.

``Trainer(config, method=None, datasets=None, callbacks=(), run_dir=None)`` reads top to
bottom as the whole training path:

1. the **task** (classification, regression, reconstruction) is chosen from the config or the
   dataset; the data come from the config's dataset or are injected as ``(train, test)``;
2. the **method** builds the model (``build_model``), its optimizer and schedule
   (``configure_optimizers``, or none for a local rule) and names its loss;
3. each epoch, batches in a seeded order go through ``method.train_step``; the validation
   split and (``test_eval = "each-epoch"``) the test split are evaluated; callbacks may add to
   the epoch's row; with ``test_eval = "best-val"`` the run keeps and ends with its best
   validation epoch's weights and evaluates test once, on them, for the summary;
4. the run directory (:mod:`.rundir`) gets the metrics, an atomic checkpoint, and at the end
   the summary, the recorded spikes (:mod:`spikeweave.monitor`) and the plots (unless
   ``config.plots`` is off).

Memory: ``activation_memory`` (:mod:`.activation`) decides what a step keeps for backward;
the training forward (:meth:`Trainer.forward`) runs the model under it.

Device and precision: the assembly puts the model on ``config.device``; every batch is copied
there (asynchronously from pinned memory on CUDA) and each step runs under the precision's
autocast (:mod:`.device`), fp16 with a gradient scaler. ``num_workers`` loader processes
prepare batches; the order of samples never depends on it. Each epoch's row records
``data_wait_s``, the seconds the loop waited for the next batch.

Determinism: the model is initialised from ``seed``; every epoch reseeds torch's global RNG
and the shuffling generator from ``(seed, epoch)``, so a resumed run replays exactly what an
uninterrupted run would have done. Evaluation draws from its own seeded stream.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..data import short_name
from ..errors import CheckpointError, ConfigError, InputError, TrainingError
from ..monitor import Activity, activity_warnings, record_spikes, save_activity
from ..nested_state import unflatten_state
from .activation import with_activation_memory
from .assembly import assemble, data_spec
from .build import compile_stateless
from .callbacks import Callback, config_callbacks
from .config import TrainConfig
from .denormal import flush_denormal
from .device import (
    autocast,
    default_num_workers,
    describe_device,
    deterministic_algorithms,
    full_precision,
    grad_scaler,
    to_device,
    torch_threads,
)
from .distributed import Distributed, from_environment, sync_batchnorm
from .evaluation import averages, encode_batch, evaluation_sums
from .methods import StepContext, TrainingMethod
from .progress import EpochProgress
from .run import (
    load_method_state,
    load_model_state,
    load_scaler_state,
    read_best_weights,
    read_training_checkpoint,
    save_best_weights,
    save_run,
    versions,
    write_checkpoint,
)
from .rundir import RunDir

__all__ = ["Trainer", "versions", "data_spec"]
# versions, data_spec, read_training_checkpoint and load_model_state are re-exported here for
# code that imported them from the trainer before they moved to .run and .assembly.
_MOVED = (data_spec, versions, read_training_checkpoint, load_model_state)

ACTIVITY_SAMPLES = 64


class Trainer:
    """Trains one configuration and records it in a run directory.

    Args:
        config: the run's settings (validated here).
        method: None (the config's ``method`` and ``method_options``), a registered name, or a
            :class:`TrainingMethod` instance (its name and options are recorded in the config).
        datasets: None (the config's dataset) or ``(train, test)`` map-style datasets yielding
            ``(x, y)`` pairs: poisoned, transformed or your own.
        callbacks: :class:`~spikeweave.training.callbacks.Callback` objects.
        run_dir: where to write; default a new folder under ``config.out_dir``.
        progress: show progress (a bar on a terminal, one line per epoch otherwise).
        distributed: this process's place in a torchrun job (default: read from the
            environment; one process when there is none).
        fit_weights: ``(tensors, path)`` of a checkpoint the model must fit (:meth:`resume`):
            checked on the meta device before the model is allocated.

    >>> summary = Trainer(TrainConfig(dataset="digits", epochs=3)).fit()
    """

    def __init__(
        self,
        config: TrainConfig,
        method: TrainingMethod | str | None = None,
        datasets: tuple[Dataset, Dataset] | None = None,
        callbacks: Sequence[Callback] = (),
        run_dir: str | Path | None = None,
        progress: bool = True,
        distributed: Distributed | None = None,
        fit_weights: tuple[dict[str, torch.Tensor], Path] | None = None,
    ) -> None:
        if distributed is None:
            distributed = from_environment(device=config.device)
        self.dist = distributed
        if self.dist.active and self.dist.device:
            config = replace(config, device=self.dist.device)  # this process's own GPU
        parts = assemble(config, datasets, method, world=self.dist.world, weights=fit_weights)
        self.parts = parts
        self.config, self.method, self.task, self.model = (
            parts.config, parts.method, parts.task, parts.model
        )  # fmt: skip
        self.train_set, self.val_set, self.test_set = parts.train_set, parts.val_set, parts.test_set
        self.injected = parts.injected
        self.optimizer, self.scheduler = parts.optimizer, parts.scheduler
        self.steps_per_epoch = parts.steps_per_epoch
        self.device = parts.device
        self.scaler = grad_scaler(self.device, self.config.precision)
        self.callbacks = [*callbacks, *self.method.callbacks(), *config_callbacks(self.config)]
        self.progress = progress
        if self.dist.active and self.config.sync_batchnorm:
            self.model = parts.model = sync_batchnorm(self.model, self.dist)
        if self.config.compile:
            compile_stateless(self.model)
        # what the step keeps for backward (activation_memory) wraps the model, inside DDP;
        # self.model, and so every checkpoint, stays the bare network
        self._net = self._parallel(
            with_activation_memory(self.model, self.config.activation_memory)
        )
        self.loss = self.method.loss(self.task)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.wall_time_s = 0.0
        self.stop_reason: str | None = None
        self._tested: dict[str, float] | None = None  # best-val: the one test evaluation
        # A fresh run's directory is created here, exclusively, so two trainers built in the
        # same second never share one; fit() removes it again if no checkpoint was written.
        self._made_run_dir = run_dir is None and self.dist.is_main
        if run_dir is None:  # every process writes (rank 0) or reads the same directory
            if self.dist.is_main:
                made: str | None = str(self._new_run_dir().path)
            else:  # fail as rank 0 does rather than wait for its broadcast
                made = None
                RunDir.check_out_dir(self.config.out_dir)
            run_dir = self.dist.broadcast(made)
        self.rundir = RunDir(run_dir)

    def _parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as the training forward sees it: wrapped in DDP across processes."""
        if not self.dist.active:
            return model
        if self.optimizer is None:
            raise ConfigError(
                f"method {self.config.method!r} updates weights itself, so processes would "
                "drift apart; train it in one process"
            )
        from torch.nn.parallel import DistributedDataParallel

        where = torch.device(self.dist.device or "cpu")
        return DistributedDataParallel(model, device_ids=[where] if where.type == "cuda" else None)

    @property
    def run_dir(self) -> Path:
        """The run directory's path."""
        return self.rundir.path

    def _new_run_dir(self) -> RunDir:
        cfg = self.config
        name = (
            f"{short_name(cfg.dataset)}-{cfg.model}-{cfg.neuron_label}-{cfg.method}"
            f"-T{cfg.effective_steps}-s{cfg.seed}"
        )
        return RunDir.new(cfg.out_dir, name)

    # -- one epoch ----------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The model's time-major input ``[T, B, ...]`` for a batch from the dataset."""
        return encode_batch(self.config, self.task.spec, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a dataset batch and run the model (through DDP when distributed):
        ``[T, B, ...]`` output."""
        return self._net(self.encode(x))

    def _epoch_seed(self, epoch: int) -> int:
        return (self.config.seed * 1_000_003 + epoch) % 2**63

    def _loader_options(self) -> dict[str, Any]:
        """Worker processes and pinned memory: ``num_workers`` (default per device, see
        :func:`~.device.default_num_workers`); pinned host memory on CUDA, so the copy to the
        GPU overlaps the previous step."""
        workers = self.config.num_workers
        if workers is None:
            workers = default_num_workers(self.device)
        return {"num_workers": workers, "pin_memory": self.device.type == "cuda"}

    def train_epoch(self, epoch: int, bar: EpochProgress | None = None) -> dict[str, float]:
        """Train one epoch (1-based ``epoch``); returns the running loss and metrics."""
        seed = self._epoch_seed(epoch)
        torch.manual_seed(seed)
        if self.dist.active:
            sampler = DistributedSampler(
                self.train_set, self.dist.world, self.dist.rank, shuffle=True, seed=seed
            )
            sampler.set_epoch(epoch)
            loader = DataLoader(
                self.train_set, batch_size=self.config.batch_size // self.dist.world,
                sampler=sampler, **self._loader_options(),
            )  # fmt: skip
        else:
            gen = torch.Generator().manual_seed(seed)
            # the order comes from `gen` in this process, whatever the number of workers
            loader = DataLoader(
                self.train_set, batch_size=self.config.batch_size, shuffle=True, generator=gen,
                **self._loader_options(),
            )  # fmt: skip
        ctx = StepContext(
            self.model, self.optimizer, self.forward, self.loss, self.config.grad_clip, self.task,
            self.scaler,
        )  # fmt: skip
        self.model.train()
        loss_sum, seen, wait = 0.0, 0, 0.0
        totals: dict[str, list[float]] = {}
        batches = iter(loader)
        for i in itertools.count():
            ready = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            x, y = to_device(x, self.device), to_device(y, self.device)
            wait += time.perf_counter() - ready
            target = self.task.target(x, y)
            out, loss = self._step(ctx, x, target, epoch, i)
            if self.scheduler is not None:
                self.scheduler.step()
            loss_sum += float(loss) * len(x)
            seen += len(x)
            for key, (total, count) in self.task.batch_metrics(out, target).items():
                acc = totals.setdefault(key, [0.0, 0])
                acc[0] += total
                acc[1] += count
            running = {k: t / c for k, (t, c) in totals.items()}
            if bar is not None:
                bar.update(i + 1, loss_sum / seen, self.task.describe(running))
            for cb in self.callbacks:
                cb.on_batch_end(self, epoch, i, float(loss))
        keys = sorted(totals)
        flat = self.dist.all_sum(
            [loss_sum, seen, *(v for k in keys for v in totals[k])]
        )  # fmt: skip
        row = {"train_loss": flat[0] / flat[1]}
        row.update({f"train_{k}": flat[2 + 2 * i] / flat[3 + 2 * i] for i, k in enumerate(keys)})
        row["data_wait_s"] = wait
        return row

    def _step(
        self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, epoch: int, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One method step; a non-finite loss or activation is reported as the data's fault
        only when the batch itself holds NaN/inf, else as the training's."""
        where = f"at epoch {epoch}, batch {batch}"
        advice = f"lower the lr (now {self.config.lr:g})" + (
            " or enable grad_clip" if self.config.grad_clip == 0 else ""
        )
        try:
            with (
                _out_of_memory_advice(self.config, where),
                _compile_advice(self.config),
                self._autocast(),
            ):
                out, loss = self.method.train_step(ctx, x, y)
            out = full_precision(out)  # metrics in float32
        except InputError as exc:
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise InputError(
                    f"the training batch {where} contains NaN or inf; check the data"
                ) from None
            if "NaN or inf" not in str(exc):
                raise
            raise TrainingError(
                f"training diverged {where}: NaN or inf inside the network (weights or "
                f"activations); {advice}"
            ) from None
        if not math.isfinite(float(loss)):
            raise TrainingError(f"loss became {float(loss)} {where}; {advice}")
        return out, loss

    def _autocast(self):
        return autocast(self.device, self.config.precision)

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """``{split}_loss`` and the task's metrics on ``split`` ("train" or "test")."""
        sets = {"train": self.train_set, "val": self.val_set, "test": self.test_set}
        if sets.get(split) is None:
            have = ", ".join(k for k, v in sets.items() if v is not None)
            raise InputError(f"unknown split {split!r}; choose one of {have}")
        dataset = sets[split]
        if self.dist.active:  # each process evaluates its share; the sums are added
            dataset = Subset(dataset, range(self.dist.rank, len(dataset), self.dist.world))
        with (
            _out_of_memory_advice(self.config, f"evaluating the {split} split"),
            _compile_advice(self.config),
        ):
            sums = evaluation_sums(self.model, self.task, self.loss, dataset, self.config)
        keys = sorted(sums)
        flat = self.dist.all_sum([v for k in keys for v in sums[k]])
        result = averages({k: flat[2 * i : 2 * i + 2] for i, k in enumerate(keys)})
        return {f"{split}_{k}": v for k, v in result.items()}

    # -- the whole run --------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, writing metrics, checkpoints, summary and plots.

        The run directory is locked against a second process for the duration. If the run
        fails or is interrupted before its first checkpoint, the directory it created is
        removed; later, it stays resumable. Across processes, only rank 0 writes files.
        """
        repeatable = deterministic_algorithms(self.config.deterministic)
        threads = torch_threads(self.config.threads)
        if not self.dist.is_main:
            with flush_denormal(self.config.flush_denormal), repeatable, threads:
                return self._fit()
        created = self._made_run_dir or not self.rundir.path.exists()
        self.rundir.create()
        try:
            with (
                self.rundir.lock(),
                flush_denormal(self.config.flush_denormal),
                repeatable,
                threads,
            ):
                return self._fit()
        except BaseException:
            if created and self.epoch == 0:
                self.rundir.remove()
            raise

    def _fit(self) -> dict[str, Any]:
        main = self.dist.is_main
        if main:
            self.rundir.write_json(RunDir.CONFIG, self.config.to_dict())
            self.rundir.write_metrics(self.history)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        total = self.config.epochs
        with EpochProgress(self.progress and main, total, self.steps_per_epoch) as bar:
            for epoch in range(self.epoch + 1, total + 1):
                if self.stop_reason is not None:  # asked for in on_fit_start (a resumed stop)
                    break
                for cb in self.callbacks:
                    cb.on_epoch_start(self, epoch)
                bar.start_epoch(epoch)
                start, cpu_start = time.perf_counter(), time.process_time()
                row: dict[str, Any] = {"epoch": epoch}
                row.update(self.train_epoch(epoch, bar))
                row["train_time_s"] = time.perf_counter() - start
                # CPU seconds of this process (every thread): on a shared machine, unlike
                # the wall clock, it does not count time spent waiting for a core
                row["train_cpu_s"] = time.process_time() - cpu_start
                mid = time.perf_counter()
                if self.val_set is not None:
                    row.update(self.evaluate("val"))
                if self.config.test_eval == "each-epoch":  # best-val: once, in _final_test
                    row.update(self.evaluate("test"))
                row["eval_time_s"] = time.perf_counter() - mid
                row["lr"] = self.optimizer.param_groups[0]["lr"] if self.optimizer else None
                row["loss_name"] = self.loss.name
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, row)
                row["epoch_time_s"] = time.perf_counter() - start
                self.wall_time_s += row["epoch_time_s"]
                self.epoch = epoch
                self.history.append(row)
                if main:
                    save_run(self.rundir, self, epoch, self.history, self.wall_time_s)
                self.dist.barrier()  # every process sees the epoch's checkpoint before going on
                bar.end_epoch(self._epoch_line(row))
                if self.stop_reason is not None:
                    break
        self._final_test()
        summary = self.dist.broadcast(self.finish() if main else None)
        for cb in self.callbacks:
            cb.on_fit_end(self, summary)
        return summary

    def _final_test(self) -> None:
        """``test_eval = "best-val"``: evaluate the test split once, on the weights the run
        ends with (its best validation epoch's), in every process (the sums are reduced), for
        :meth:`finish`; nothing with ``each-epoch`` (the rows have them)."""
        if self.config.test_eval == "best-val" and self.history:
            self._tested = self.evaluate("test")

    def complete(self) -> dict[str, Any]:
        """Finish a run whose epochs are all trained but that has no summary (killed after its
        last checkpoint, before ``finish``): write ``summary.json``, the activity record and
        the plots from the checkpointed state, under the run's lock, and call the callbacks'
        ``on_fit_end`` (e.g. BioLeaF's apical plot) as ``fit`` would have; return the summary."""
        if self.epoch < self.config.epochs:
            raise TrainingError(
                f"{self.rundir} has {self.config.epochs - self.epoch} epochs left to train; "
                "resume it to train them (fit), not to finish it"
            )
        settings = deterministic_algorithms(self.config.deterministic)
        with settings, torch_threads(self.config.threads):
            if not self.dist.is_main:
                self._final_test()
                summary = self.dist.broadcast(None)
            else:
                with self.rundir.lock(), flush_denormal(self.config.flush_denormal):
                    self._final_test()
                    summary = self.dist.broadcast(self.finish())
        for cb in self.callbacks:
            cb.on_fit_end(self, summary)
        return summary

    def request_stop(self, reason: str) -> None:
        """End training after the current epoch (call from ``on_epoch_end``, e.g. early
        stopping; from ``on_fit_start``, before any further epoch). The epoch's row and
        checkpoint are written first; ``summary.json`` records ``stopped_early`` (the last
        epoch and ``reason``). Every process of a distributed run must ask alike (callbacks see
        the same reduced metrics, so they do)."""
        self.stop_reason = reason

    def _epoch_line(self, row: dict[str, Any]) -> str:
        m = self.task.metric
        fmt = (lambda v: f"{v:.2%}") if m == "accuracy" else (lambda v: f"{v:.4g}")
        split = "test" if f"test_{m}" in row else "val"  # best-val: no test until the end
        return (
            f"epoch {row['epoch']:3d}/{self.config.epochs}  train loss {row['train_loss']:.4f} "
            f"{m} {fmt(row[f'train_{m}'])}  {split} {m} {fmt(row[f'{split}_{m}'])}  "
            f"({row['epoch_time_s']:.1f} s)"
        )

    def record_activity(self) -> Activity:
        """Spikes of every spiking layer for the first test samples, with labels and
        predictions (classification)."""
        loader = DataLoader(self.test_set, batch_size=ACTIVITY_SAMPLES)
        x, y = next(iter(loader))
        x = to_device(x, self.device)
        self.model.eval()
        with torch.random.fork_rng(devices=[]), self._autocast():
            torch.manual_seed(self.config.seed)
            xt = self.encode(x)
            spikes = record_spikes(self.model, xt)
            labels = predictions = None
            if self.task.name == "classification":
                with torch.no_grad():
                    predictions = self.task.predict(full_precision(self.model(xt))).tolist()
                labels = [int(v) for v in y]
        return Activity(spikes, labels, predictions)

    def finish(self) -> dict[str, Any]:
        """Write ``summary.json``, the activity record and (``config.plots``) the plots; return
        the summary. With ``test_eval = "best-val"`` its ``test_*`` are the one test
        evaluation of the weights held (:meth:`_final_test`)."""
        tested = self._tested
        if tested is None and self.config.test_eval == "best-val" and self.history:
            tested = self.evaluate("test")
        from ..plots import firing_rates, plot_run

        activity = self.record_activity()
        if activity.spikes:
            save_activity(self.rundir / RunDir.ACTIVITY, activity)
        # The model holds the last epoch's weights unless a callback loaded an earlier epoch's
        # (the last row's weights_epoch, e.g. early stopping): report the epoch it holds.
        last = self.history[-1] if self.history else {}
        held = last.get("weights_epoch", last.get("epoch"))
        last = next((r for r in self.history if r.get("epoch") == held), last)
        m = self.task.metric
        pick = max if self.task.higher_is_better else min
        summary: dict[str, Any] = {
            "task": self.task.name,
            "method": self.config.method,
            "loss_name": self.loss.name,
        }
        summary.update({k: v for k, v in last.items() if k.startswith("test_")})
        if tested is not None:  # best-val: the one test evaluation, of the held weights
            summary.update(tested)
            summary["test_eval"] = "best-val"
        else:
            summary[f"best_test_{m}"] = pick((r[f"test_{m}"] for r in self.history), default=None)
        summary[f"train_{m}"] = last.get(f"train_{m}")
        if self.val_set is not None and self.history:
            # Selection on the validation split: the test metric of the best validation epoch.
            best = pick(self.history, key=lambda r: r[f"val_{m}"])
            summary["best_epoch_by_val"] = best["epoch"]
            summary[f"best_val_{m}"] = best[f"val_{m}"]
            summary[f"test_{m}_at_best_val"] = (
                tested[f"test_{m}"] if tested is not None else best[f"test_{m}"]
            )
        summary["train_loss"] = last.get("train_loss")
        summary.update(
            {
                "epochs": self.epoch,
                "weights_epoch": held,
                "wall_time_s": self.wall_time_s,
                "seed": self.config.seed,
                "spiking": self.config.spiking,
                "steps": self.config.effective_steps,
                **describe_device(self.device),
                "precision": self.config.precision,
                "num_parameters": sum(p.numel() for p in self.model.parameters()),
                "firing_rates": firing_rates(activity.spikes) if activity.spikes else {},
                "data_spec": self.task.spec.to_dict(),
                "config": self.config.to_dict(),
                "versions": versions(),
                "run_dir": str(self.rundir),
            }
        )
        summary["activity_warnings"] = activity_warnings(activity.spikes)
        if self.stop_reason is not None:
            summary["stopped_early"] = {"after_epoch": self.epoch, "reason": self.stop_reason}
        self.rundir.write_json(RunDir.SUMMARY, summary)
        if self.config.plots:  # off: `spikeweave plot RUN` draws them from the files above
            plot_run(self.rundir.path)
        return summary

    # -- checkpoints ----------------------------------------------------------------------
    def save_best_weights(self, state: dict[str, torch.Tensor], epoch: int) -> Path:
        """Keep ``state`` (CPU copies of the model's weights) as epoch ``epoch``'s best
        validation weights in the run directory (:func:`~.run.save_best_weights`)."""
        return save_best_weights(self.rundir, state, epoch, self.task.metric)

    def read_best_weights(self, epoch: int) -> dict[str, torch.Tensor]:
        """The best validation weights :meth:`save_best_weights` kept for ``epoch``."""
        return read_best_weights(self.rundir, epoch)

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write model, optimizer, scheduler and method state atomically (default: the run's
        latest checkpoint)."""
        target = Path(path) if path else self.rundir / RunDir.CHECKPOINT
        return write_checkpoint(target, self, self.epoch, self.history, self.wall_time_s)

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        progress: bool = True,
        method: TrainingMethod | None = None,
        datasets: tuple[Dataset, Dataset] | None = None,
        callbacks: Sequence[Callback] = (),
        epochs: int | None = None,
        data_root: str | None = None,
        device: str | None = None,
        threads: int | None = None,
    ) -> Trainer:
        """Continue the run in ``run_dir`` from its latest checkpoint.

        ``datasets`` and ``method`` must be given again when the run was trained on injected
        data or with an unregistered method instance. ``epochs`` extends the run (its schedule
        is stretched to the new length); ``data_root`` says where the dataset's files are now;
        ``device`` where to go on (default: the run's ``device``), e.g. ``cpu`` for a run
        trained on a GPU: the checkpoint holds CPU tensors, optimizer state follows the
        parameters' device. ``threads`` replaces the run's torch thread count (parallel
        reductions may then round differently in the last bits, as on another machine).
        """
        rundir = RunDir(run_dir).require()
        tensors, meta = read_training_checkpoint(rundir.path / RunDir.CHECKPOINT)
        config = TrainConfig.from_dict(meta["config"], source=str(rundir / RunDir.CHECKPOINT))
        if epochs is not None:
            if epochs < len(meta["history"]):
                raise ConfigError(
                    f"--epochs {epochs} is below the {len(meta['history'])} epochs already "
                    "trained; pass a larger value to extend the run"
                )
            config.epochs = epochs
        if data_root is not None:
            config.data_root = data_root
        if device is not None:
            config.device = device
        if threads is not None:
            config.threads = threads
        trainer = cls(
            config,
            method=method,
            datasets=datasets,
            callbacks=callbacks,
            run_dir=rundir.path,
            progress=progress,
            fit_weights=(tensors, rundir.path / RunDir.CHECKPOINT),
        )
        trainer.load_state(tensors, meta)
        return trainer

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore model, optimizer, scheduler, method state, the fp16 gradient scaler and
        history from a loaded checkpoint (one without ``method_state`` or ``grad_scaler``,
        written before those were saved, leaves the method as built and the scaler fresh)."""
        path = self.rundir / RunDir.CHECKPOINT
        load_model_state(self.model, tensors, path)  # CPU tensors copied onto the device
        try:  # the optimizer moves its state to its parameters' device itself
            for key, obj in (("optimizer", self.optimizer), ("scheduler", self.scheduler)):
                if obj is not None:
                    obj.load_state_dict(unflatten_state(tensors, meta[key]))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            msg = str(exc).splitlines()[0]
            raise CheckpointError(
                f"checkpoint's optimizer state does not match the configured run: {msg}"
            ) from None
        if self.optimizer is not None:
            _check_optimizer_state(self.optimizer, path)
        load_method_state(self.method, tensors, meta, path, self.device)
        load_scaler_state(self.scaler, meta, path)  # fp16: the scale goes on where it was
        self.epoch = int(meta["epoch"])
        self.history = list(meta["history"])
        self.wall_time_s = float(meta["wall_time_s"])
        if isinstance(self.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            # A run extended with more epochs decays to zero at its new last epoch.
            self.scheduler.T_max = self.config.epochs * self.steps_per_epoch


def _check_optimizer_state(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Refuse loaded optimizer state whose per-parameter tensors (Adam's moments, momentum
    buffers) are not shaped like their parameter: torch loads them unchecked and the first
    step would fail with a traceback."""
    for group in optimizer.param_groups:
        for key in ("lr", "initial_lr", "weight_decay", "eps", "momentum", "betas"):
            values = group.get(key, 0.0)
            values = list(values) if isinstance(values, list | tuple) else [values]
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            ):
                raise CheckpointError(
                    f"{path}: optimizer setting {key!r} is {group[key]!r}, not a finite number; "
                    "the checkpoint is damaged or from another version"
                )
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    if value.shape != param.shape:
                        raise CheckpointError(
                            f"{path}: optimizer state {key!r} has shape {tuple(value.shape)}, "
                            f"its parameter {tuple(param.shape)}; the checkpoint is damaged or "
                            "from another run"
                        )


@contextlib.contextmanager
def _out_of_memory_advice(config: TrainConfig, where: str) -> Iterator[None]:
    """Turn an allocator failure into a one-line error that says which options to lower."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        text = str(exc)
        if not isinstance(exc, MemoryError) and not any(
            key in text for key in ("out of memory", "can't allocate memory", "not enough memory")
        ):
            raise
        raise TrainingError(
            f"out of memory {where} (T={config.steps}, batch size {config.batch_size}, eval "
            f"batch size {config.eval_batch_size}); lower --steps, --batch-size or "
            "eval_batch_size"
        ) from None


@contextlib.contextmanager
def _compile_advice(config: TrainConfig) -> Iterator[None]:
    """A failure of ``torch.compile`` itself (no C compiler, no Triton) as one line."""
    if not config.compile:
        yield
        return
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        yield
    except BackendCompilerFailed as exc:
        first = " ".join(str(exc).split())[:200]
        raise TrainingError(f"torch.compile failed ({first}); train without --compile") from None
