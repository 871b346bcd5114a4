"""``spikeweave train``: options to a :class:`~spikeweave.training.TrainConfig`, a new or resumed
run, and the lines it prints. Options a run would not read, or that would change a resumed run,
are refused, not ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import ConfigError
from .help_text import DEVICE_HELP, option_help


def train(
    dataset: str = typer.Option(
        None,
        help=option_help(
            "Dataset (see `spikeweave data list`), or the path of your own data: a folder of "
            "images in class sub-folders or an .npz file with x and y (docs/data.md).",
            "dataset",
        ),
    ),
    task: str = typer.Option(
        None, help=option_help("Task; auto = from the dataset.", "task", registry="task")
    ),
    model: str = typer.Option(
        None,
        help=option_help(
            "Architecture; ann / ann-mlp = convnet / mlp with ReLU.", "model", registry="model"
        ),
    ),
    neuron: str = typer.Option(None, help=option_help("Neuron.", "neuron", registry="neuron")),
    method: str = typer.Option(
        None, help=option_help("Training method.", "method", registry="method")
    ),
    steps: int = typer.Option(
        None, "--steps", "-T", help=option_help("Time steps T per sample.", "steps")
    ),
    epochs: int = typer.Option(
        None, help=option_help("Training epochs; with --resume, extends the run.", "epochs")
    ),
    batch_size: int = typer.Option(None, help=option_help("Training batch size.", "batch_size")),
    lr: float = typer.Option(None, help=option_help("Peak learning rate (AdamW).", "lr")),
    weight_decay: float = typer.Option(
        None, help=option_help("AdamW weight decay (0: none).", "weight_decay")
    ),
    schedule: str = typer.Option(
        None,
        help=option_help(
            "Learning-rate schedule, stepped every batch.",
            "schedule",
            "cosine | exponential | constant",
        ),
    ),
    gamma: float = typer.Option(
        None,
        help=option_help("Exponential schedule: lr factor per epoch, in (0, 1].", "gamma"),
    ),
    hidden: str = typer.Option(
        None,
        help="Hidden layer sizes, comma-separated: mlp any number (e.g. 256,128), convnet one "
        "(its dense layer). (default: mlp 256,128, convnet 128)",
    ),
    seed: int = typer.Option(
        None,
        help=option_help("Seed for initialisation, data order and noise (0 to 2^63-1).", "seed"),
    ),
    surrogate: str = typer.Option(
        None, help=option_help("Surrogate gradient.", "surrogate", registry="surrogate")
    ),
    alpha: float = typer.Option(None, help=option_help("Surrogate sharpness α.", "alpha")),
    reset: str = typer.Option(
        None, help=option_help("Reset after a spike.", "reset", "hard | soft")
    ),
    tau: float = typer.Option(None, help=option_help("Membrane time constant in steps.", "tau")),
    threshold: float = typer.Option(None, help=option_help("Firing threshold.", "threshold")),
    pool: str = typer.Option(None, help=option_help("Conv net pooling.", "pool", "max | avg")),
    detach_reset: bool = typer.Option(
        None,
        "--detach-reset/--keep-reset-grad",
        help="Detach the reset path in backward (default) or keep it.",
    ),
    encoder: str = typer.Option(
        None, help=option_help("Input encoder.", "encoder", registry="encoder")
    ),
    sync_batchnorm: bool = typer.Option(
        None,
        "--sync-batchnorm/--no-sync-batchnorm",
        help="torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm).",
    ),
    compile: bool = typer.Option(
        None,
        "--compile/--no-compile",
        help="Run the stateless layers through torch.compile (see docs/performance.md).",
    ),
    activation_memory: str = typer.Option(
        None,
        help=option_help(
            "What a training step keeps for backward: spikes at 1 bit (pack), only each "
            "neuron block's input, recomputed in backward (checkpoint), or both; same "
            "gradients (see docs/performance.md).",
            "activation_memory",
            "save | pack | checkpoint | checkpoint+pack",
        ),
    ),
    val_fraction: float = typer.Option(
        None,
        help=option_help("Share of the training data held out for validation.", "val_fraction"),
    ),
    train_size: int = typer.Option(
        None,
        help=option_help(
            "Training images kept after validation is held out (a fixed-seed subset; 0: all).",
            "train_size",
        ),
    ),
    early_stopping: int = typer.Option(
        None,
        help=option_help(
            "Stop once validation has not improved for N epochs and keep the best validation "
            "epoch's weights; needs --val-fraction. 0: off.",
            "early_stopping",
        ),
    ),
    test_eval: str = typer.Option(
        None,
        help=option_help(
            "When test is evaluated: every epoch, or once, on the best validation epoch's "
            "weights (which the run keeps and ends with); best-val needs --val-fraction.",
            "test_eval",
            "each-epoch | best-val",
        ),
    ),
    tensorboard: bool = typer.Option(
        None,
        "--tensorboard/--no-tensorboard",
        help="Log the epoch metrics for TensorBoard under RUN/tensorboard/ (needs the "
        "tensorboard package). (default: off)",
    ),
    plots: bool = typer.Option(
        None,
        "--plots/--no-plots",
        help="Draw the run's PNG plots when it ends; off, `spikeweave plot RUN` draws them "
        "later from the run's files. (default: on)",
    ),
    loss: str = typer.Option(
        None, help=option_help("Loss; auto = the task's (classification: ce).", "loss", "ce | mse")
    ),
    poison_fraction: float = typer.Option(
        None,
        help="Backdoor: share of training images given the trigger (default: none, no "
        "poisoning). Sets [train_transforms.backdoor].",
    ),
    poison_target: int = typer.Option(
        None, help="Backdoor: the class poisoned images are relabelled to. (default: 0)"
    ),
    poison_trigger: str = typer.Option(
        None, help="Backdoor trigger pattern. One of: binary | grey. (default: binary)"
    ),
    poison_trigger_size: int = typer.Option(
        None, help="Backdoor trigger side in pixels. (default: 3)"
    ),
    poison_seed: int = typer.Option(
        None, help="Seed of the trigger, the poisoned images and positions. (default: 0)"
    ),
    poison_kind: str = typer.Option(
        None,
        help="Backdoor trigger kind. One of: badnets (a patch) | blended (a blended noise "
        "pattern) | wanet (a smooth warp); their other options live in "
        "[train_transforms.backdoor]. (default: badnets)",
    ),
    out_dir: Path = typer.Option(
        None,
        help=option_help("Folder under which the run directory is created.", "out_dir"),  # noqa: B008
    ),
    data_root: Path = typer.Option(None, help="Folder holding file-based datasets."),
    config: Path = typer.Option(None, "--config", help="TOML file with any of these settings."),
    resume: Path = typer.Option(
        None, help="Continue the run in this directory from its checkpoint."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show progress (a bar on a terminal)."
    ),
    device: str = typer.Option(
        None, help=DEVICE_HELP + " With --resume: where to go on (default: the run's)."
    ),
    precision: str = typer.Option(
        None,
        help=option_help(
            "Arithmetic: bf16 and fp16 run under autocast (fp16 on CUDA only).",
            "precision",
            "fp32 | bf16 | fp16",
        ),
    ),
    num_workers: int = typer.Option(
        None, help="Data-loading processes (default: 0 on the CPU, min(4, cores/2) on CUDA)."
    ),
    threads: int = typer.Option(
        None,
        help="torch intra-op threads while the run trains; with --resume, for the rest of "
        "the run. (default: torch's choice)",
    ),
    deterministic: bool = typer.Option(
        None,
        "--deterministic/--no-deterministic",
        help="Deterministic algorithms (and the cuBLAS workspace setting) on a GPU.",
    ),
) -> None:
    """Train a model; with no options, a LIF conv net on the embedded mnist5k."""
    given = dict(
        dataset=dataset,
        task=task,
        model=model,
        neuron=neuron,
        method=method,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        gamma=gamma,
        hidden=_hidden_sizes(hidden) if hidden is not None else None,
        early_stopping=early_stopping,
        test_eval=test_eval,
        tensorboard=tensorboard,
        plots=plots,
        threads=threads,
        seed=seed,
        surrogate=surrogate,
        alpha=alpha,
        reset=reset,
        tau=tau,
        threshold=threshold,
        detach_reset=detach_reset,
        sync_batchnorm=sync_batchnorm,
        compile=compile,
        activation_memory=activation_memory,
        pool=pool,
        encoder=encoder,
        loss=loss,
        val_fraction=val_fraction,
        train_size=train_size,
        out_dir=str(out_dir) if out_dir is not None else None,
        data_root=str(data_root) if data_root is not None else None,
        device=device,
        precision=precision,
        num_workers=num_workers,
        deterministic=deterministic,
    )
    given = {k: v for k, v in given.items() if v is not None}
    # the --poison-* flags are the options of the backdoor training-split transform
    flags = (poison_fraction, poison_target, poison_trigger, poison_trigger_size, poison_seed,
             poison_kind)  # fmt: skip
    keys = ("fraction", "target", "trigger", "trigger_size", "seed", "kind")
    poison = {k: v for k, v in zip(keys, flags, strict=True) if v is not None}
    if resume is not None:
        trainer, finish_only = _resumed(resume, config, given, poison, progress)
    else:
        trainer, finish_only = _new_run(config, given, poison, progress), False
    summary = _fit(trainer, finish_only)
    _report(trainer, summary)
    trainer.dist.close()  # leave the process group cleanly (torchrun); a no-op in one process


def _resumed(
    resume: Path,
    config: Path | None,
    given: dict[str, Any],
    poison: dict[str, Any],
    progress: bool,
) -> tuple[Any, bool]:
    """The trainer of the run in ``resume`` and whether only its summary is left to write;
    options that would change the run are refused."""
    from ..training import RunDir, Trainer

    if config is not None:
        raise ConfigError("--config cannot be combined with --resume: the run keeps its own")
    trainer = Trainer.resume(
        resume,
        progress=progress,
        epochs=given.pop("epochs", None),
        data_root=given.pop("data_root", None),
        device=given.pop("device", None),
        threads=given.pop("threads", None),
    )
    _refuse_conflicts(given, trainer.config)
    _refuse_finished_early(trainer, resume)
    _refuse_conflicts(poison, trainer.config.train_transforms.get("backdoor", {}), "poison_")
    finish_only = trainer.epoch >= trainer.config.epochs
    if finish_only and (trainer.run_dir / RunDir.SUMMARY).exists():
        raise ConfigError(
            f"{resume} already finished its {trainer.config.epochs} epochs; pass a larger "
            "--epochs to extend it"
        )
    if finish_only:  # killed after its last checkpoint, before the summary was written
        _say(
            trainer,
            f"finishing {resume}: its {trainer.epoch} epochs are trained; writing the "
            "summary, activity and plots",
        )
    else:
        _say(
            trainer,
            f"resuming {resume} after epoch {trainer.epoch} of {trainer.config.epochs}",
        )
    return trainer, finish_only


def _new_run(
    config: Path | None, given: dict[str, Any], poison: dict[str, Any], progress: bool
) -> Any:
    """A trainer for a new run: the config file's values, overridden by the options given."""
    from ..training import Trainer, load_config
    from ..training.config import TrainConfig, fold_legacy

    values: dict[str, Any] = load_config(config) if config is not None else {}
    if "method" in given and given["method"] != values.get("method", given["method"]):
        values.pop("method_options", None)  # options of the config's method, not this one
    values.update(given)
    if poison:
        values = _with_poison(fold_legacy(values), poison)
    _refuse_ignored(values)
    cfg = TrainConfig.from_dict(values, source=str(config) if config else "options")
    trainer = Trainer(cfg, progress=progress)
    cfg = trainer.config
    _say(
        trainer,
        f"training {cfg.dataset} / {cfg.model} / {cfg.neuron_label} / {cfg.method}, "
        f"T={cfg.effective_steps}, {cfg.epochs} epochs, seed {cfg.seed}, on "
        f"{trainer.device} ({cfg.precision}) -> {trainer.run_dir}"
        + (f" ({trainer.dist.world} processes)" if trainer.dist.active else ""),
    )
    return trainer


def _fit(trainer: Any, finish_only: bool) -> dict[str, Any]:
    """Train (or only finish) the run; Ctrl-C says how to continue it."""
    try:
        summary = trainer.complete() if finish_only else trainer.fit()
    except KeyboardInterrupt:
        if trainer.epoch > 0:
            typer.echo(
                f"interrupted after epoch {trainer.epoch}; continue with: spikeweave train "
                f"--resume {trainer.run_dir}",
                err=True,
            )
        else:
            typer.echo("interrupted before the first epoch finished; nothing to resume", err=True)
        raise typer.Exit(130) from None
    return summary


def _report(trainer: Any, summary: dict[str, Any]) -> None:
    """The run's warnings, its metrics and where it was written (main process only)."""
    if trainer.dist.is_main:
        for line in summary.get("activity_warnings", ()):
            typer.echo(f"warning: {line}", err=True)
    metric = trainer.task.metric
    fmt = (lambda v: f"{v:.2%}") if metric == "accuracy" else (lambda v: f"{v:.4g}")
    _say(
        trainer,
        f"test {metric} {fmt(summary[f'test_{metric}'])} "
        + (
            f"(best {fmt(summary[f'best_test_{metric}'])}), "
            if f"best_test_{metric}" in summary
            else f"(once, at best validation epoch {summary['weights_epoch']}), "
        )
        + f"train {metric} "
        f"{fmt(summary[f'train_{metric}'])}, {summary['wall_time_s']:.0f} s",
    )
    _say(trainer, f"run written to {trainer.run_dir}")


def _say(trainer: Any, line: str) -> None:
    """Print on the main process only (torchrun starts several)."""
    if trainer.dist.is_main:
        typer.echo(line)


def _hidden_sizes(text: str) -> list[int]:
    """``--hidden 256,128`` as ``[256, 128]``; anything else is a one-line ConfigError (sizes
    below 1 are refused by the config)."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.lstrip("-").isdigit() for p in parts):
        raise ConfigError(
            f"--hidden {text!r}: give the layer sizes as integers separated by commas, e.g. "
            "--hidden 256,128"
        )
    return [int(p) for p in parts]


def _refuse_finished_early(trainer: Any, resume: Path) -> None:
    """A run its early stopping ended (it holds its best validation epoch's weights, the last
    row's ``weights_epoch``) has nothing left to train once its summary is written."""
    from ..training import RunDir

    held = trainer.history[-1].get("weights_epoch") if trainer.history else None
    if held is None or not (trainer.run_dir / RunDir.SUMMARY).exists():
        return
    why = "test_eval best-val" if not trainer.config.early_stopping else "early stopping"
    raise ConfigError(
        f"{resume} is finished: {why} ended it after epoch {trainer.epoch} with the "
        f"weights of its best validation epoch {held}; train a new run to change it"
    )


def _with_poison(values: dict[str, Any], poison: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the ``--poison-*`` options in ``train_transforms.backdoor`` (over a
    config file's table); the other options without a fraction are refused, not ignored."""
    tables = dict(values.get("train_transforms") or {})
    table = {**tables.get("backdoor", {}), **poison}
    fraction = table.get("fraction", 0)
    others = [k for k in poison if k != "fraction"]
    off = isinstance(fraction, int | float) and not isinstance(fraction, bool) and fraction <= 0
    if others and off:
        flag = "--poison-" + others[0].replace("_", "-")
        raise ConfigError(
            f"{flag} needs --poison-fraction > 0 (the share of training images to poison); "
            "it only applies to a poisoned run"
        )
    return {**values, "train_transforms": {**tables, "backdoor": table}}


# Options only a spiking network reads (an ANN baseline would silently drop them), with the
# flag that sets each.
_SPIKING_ONLY = {
    "steps": "-T/--steps",
    "neuron": "--neuron",
    "tau": "--tau",
    "threshold": "--threshold",
    "surrogate": "--surrogate",
    "alpha": "--alpha",
    "reset": "--reset",
    "detach_reset": "--detach-reset/--keep-reset-grad",
    "v_reset": "v_reset",
    "decay_input": "decay_input",
}


def _refuse_ignored(values: dict[str, Any]) -> None:
    """Options given on the command line or in the TOML that the run would not read are
    refused, not ignored (defaults never count: only keys present in ``values``)."""
    from ..training.config import ANN_MODELS, TrainConfig

    model = values.get("model", TrainConfig().model)
    if isinstance(model, str) and model in ANN_MODELS:
        for key, flag in _SPIKING_ONLY.items():
            if key in values and not (key == "neuron" and values[key] == "relu"):
                raise ConfigError(
                    f"{flag} ({key} = {values[key]!r}) does not apply to model {model!r}: it is "
                    "a ReLU network without time steps; leave it out or choose a spiking model"
                )
    elif values.get("neuron") == "relu":
        for key, flag in _SPIKING_ONLY.items():
            if key in values and key != "neuron":
                raise ConfigError(
                    f"{flag} ({key} = {values[key]!r}) does not apply to neuron 'relu' (the ANN "
                    "twin, without time steps); leave it out or choose a spiking neuron"
                )
    schedule = values.get("schedule", TrainConfig().schedule)
    if "gamma" in values and schedule != "exponential":
        raise ConfigError(
            f"--gamma (gamma = {values['gamma']!r}) applies to the exponential schedule only, "
            f"not {schedule!r}; leave it out or pass --schedule exponential"
        )


def _refuse_conflicts(given: dict[str, Any], saved: Any, prefix: str = "") -> None:
    """Options that would change a resumed run are refused, not ignored (``saved``: the
    config, or a mapping of options whose flags start with ``prefix``)."""
    for key, value in given.items():
        current = saved.get(key) if isinstance(saved, dict) else getattr(saved, key)
        if value != current:
            key = prefix + key
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} conflicts with the resumed run's {key} = {current!r}; a resumed "
                "run keeps its settings (only --epochs may extend it)"
            )
