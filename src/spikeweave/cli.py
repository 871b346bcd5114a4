"""The ``spikeweave`` command: train, evaluate, plot, run experiments and inspect datasets.

Choices and defaults in the help come from the registries and from :class:`TrainConfig`, so
they never drift from what the library accepts; they are read when a command's help is shown,
and every library module is imported inside the command that needs it, so that ``--help`` and
``data list`` start without torch. Every spikeweave error becomes one line ``error: ...`` on
stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand

from .errors import ConfigError, SpikeweaveError

if TYPE_CHECKING:
    from .training.config import TrainConfig

app = typer.Typer(
    help="spikeweave: train spiking neural networks on PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: what is available and where files go.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_DEVICE_HELP = (
    "Where to compute: auto (CUDA when available, else the CPU) | cpu | cuda | cuda:N; a GPU "
    "that is not there is an error."
)


def _help(
    text: str, field: str | None = None, choices: str | None = None, registry: str | None = None
) -> str:
    """An option's help: ``text``, the choices (literal, or those of ``registry``) and the
    :class:`TrainConfig` default of ``field``. The last two are placeholders that
    :class:`_LibraryHelp` fills in when the help is shown."""
    parts = [text.replace("{", "{{").replace("}", "}}")]
    if choices:
        parts.append(f"One of: {choices.replace('{', '{{').replace('}', '}}')}.")
    if registry:
        parts.append(f"One of: {{choices[{registry}]}}.")
    if field is not None:
        parts.append(f"(default: {{default[{field}]}})")
    return " ".join(parts)


class _Defaults:
    """``TrainConfig()``'s field values as the help shows them (empty or None: auto)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def __getitem__(self, field: str) -> Any:
        value = getattr(self.config, field)
        return value if value not in ("", None) else "auto"


class _LibraryHelp(TyperCommand):
    """A command whose option help names registry choices and ``TrainConfig`` defaults.

    They are read only when the help is shown: the registries' modules import torch, which
    ``spikeweave --help`` and the other commands must not wait for.
    """

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from .encoding import ENCODERS
        from .models import MODELS
        from .neurons import NEURONS
        from .surrogate import SURROGATES
        from .tasks import TASKS
        from .training.config import ANN_MODELS, TrainConfig
        from .training.methods import METHODS

        values = {
            "choices": {
                "task": TASKS.choices(),
                "model": " | ".join([*MODELS.names(), *ANN_MODELS]),
                "neuron": NEURONS.choices(),
                "method": METHODS.choices(),
                "surrogate": SURROGATES.choices(),
                "encoder": ENCODERS.choices(),
            },
            "default": _Defaults(TrainConfig()),
        }
        for param in self.params:
            if param.help and "{" in param.help:  # a _help template not yet filled in
                param.help = param.help.format_map(values)
        super().format_help(ctx, formatter)


def _version(value: bool) -> None:
    if value:
        from .version import __version__

        typer.echo(f"spikeweave {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """spikeweave: train spiking neural networks on PyTorch."""


@app.command(cls=_LibraryHelp)
def train(
    dataset: str = typer.Option(
        None,
        help=_help(
            "Dataset (see `spikeweave data list`), or the path of your own data: a folder of "
            "images in class sub-folders or an .npz file with x and y (docs/data.md).",
            "dataset",
        ),
    ),
    task: str = typer.Option(
        None, help=_help("Task; auto = from the dataset.", "task", registry="task")
    ),
    model: str = typer.Option(
        None,
        help=_help(
            "Architecture; ann / ann-mlp = convnet / mlp with ReLU.", "model", registry="model"
        ),
    ),
    neuron: str = typer.Option(None, help=_help("Neuron.", "neuron", registry="neuron")),
    method: str = typer.Option(None, help=_help("Training method.", "method", registry="method")),
    steps: int = typer.Option(
        None, "--steps", "-T", help=_help("Time steps T per sample.", "steps")
    ),
    epochs: int = typer.Option(
        None, help=_help("Training epochs; with --resume, extends the run.", "epochs")
    ),
    batch_size: int = typer.Option(None, help=_help("Training batch size.", "batch_size")),
    lr: float = typer.Option(None, help=_help("Peak learning rate (AdamW).", "lr")),
    weight_decay: float = typer.Option(
        None, help=_help("AdamW weight decay (0: none).", "weight_decay")
    ),
    schedule: str = typer.Option(
        None,
        help=_help(
            "Learning-rate schedule, stepped every batch.",
            "schedule",
            "cosine | exponential | constant",
        ),
    ),
    gamma: float = typer.Option(
        None,
        help=_help("Exponential schedule: lr factor per epoch, in (0, 1].", "gamma"),
    ),
    hidden: str = typer.Option(
        None,
        help="Hidden layer sizes, comma-separated: mlp any number (e.g. 256,128), convnet one "
        "(its dense layer). (default: mlp 256,128, convnet 128)",
    ),
    seed: int = typer.Option(
        None, help=_help("Seed for initialisation, data order and noise (0 to 2^63-1).", "seed")
    ),
    surrogate: str = typer.Option(
        None, help=_help("Surrogate gradient.", "surrogate", registry="surrogate")
    ),
    alpha: float = typer.Option(None, help=_help("Surrogate sharpness α.", "alpha")),
    reset: str = typer.Option(None, help=_help("Reset after a spike.", "reset", "hard | soft")),
    tau: float = typer.Option(None, help=_help("Membrane time constant in steps.", "tau")),
    threshold: float = typer.Option(None, help=_help("Firing threshold.", "threshold")),
    pool: str = typer.Option(None, help=_help("Conv net pooling.", "pool", "max | avg")),
    detach_reset: bool = typer.Option(
        None,
        "--detach-reset/--keep-reset-grad",
        help="Detach the reset path in backward (default) or keep it.",
    ),
    encoder: str = typer.Option(None, help=_help("Input encoder.", "encoder", registry="encoder")),
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
        help=_help(
            "What a training step keeps for backward: spikes at 1 bit (pack), only each "
            "neuron block's input, recomputed in backward (checkpoint), or both; same "
            "gradients (see docs/performance.md).",
            "activation_memory",
            "save | pack | checkpoint | checkpoint+pack",
        ),
    ),
    val_fraction: float = typer.Option(
        None, help=_help("Share of the training data held out for validation.", "val_fraction")
    ),
    train_size: int = typer.Option(
        None,
        help=_help(
            "Training images kept after validation is held out (a fixed-seed subset; 0: all).",
            "train_size",
        ),
    ),
    early_stopping: int = typer.Option(
        None,
        help=_help(
            "Stop once validation has not improved for N epochs and keep the best validation "
            "epoch's weights; needs --val-fraction. 0: off.",
            "early_stopping",
        ),
    ),
    test_eval: str = typer.Option(
        None,
        help=_help(
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
        None, help=_help("Loss; auto = the task's (classification: ce).", "loss", "ce | mse")
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
        help=_help("Folder under which the run directory is created.", "out_dir"),  # noqa: B008
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
        None, help=_DEVICE_HELP + " With --resume: where to go on (default: the run's)."
    ),
    precision: str = typer.Option(
        None,
        help=_help(
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
    from .training import RunDir, Trainer, load_config
    from .training.config import TrainConfig, fold_legacy

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
    finish_only = False
    if resume is not None:
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
    else:
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
    trainer.dist.close()  # leave the process group cleanly (torchrun); a no-op in one process


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
    from .training import RunDir

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
    from .training.config import ANN_MODELS, TrainConfig

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


@app.command("eval")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    split: str = typer.Option(
        "test", help="Which split to evaluate. One of: test | train | val (if held out)."
    ),
    device: str = typer.Option("auto", help=_DEVICE_HELP),
) -> None:
    """Evaluate a run's latest checkpoint; writes eval.json into the run."""
    from .training import RunDir, load_run

    if split not in ("test", "train", "val"):
        raise ConfigError(f"unknown split {split!r}; choose one of test, train, val")
    run = load_run(run_dir, device=device)
    RunDir(run_dir).check_not_link()  # before the evaluation, which can take a while
    result = {f"{split}_{k}": v for k, v in run.evaluate(split).items()}
    result["epoch"] = run.epoch
    result["weights_epoch"] = run.weights_epoch
    result["device"] = str(run.device)
    result["loss_name"] = run.loss.name
    RunDir(run_dir).write_json(RunDir.EVAL, result)
    metric = run.task.metric
    value = result[f"{split}_{metric}"]
    shown = f"{value:.2%}" if metric == "accuracy" else f"{value:.4g}"
    typer.echo(
        f"{split} {metric} {shown}  loss {result[f'{split}_loss']:.4f} ({run.loss.name}), "
        f"epoch {run.epoch}"
        + (
            f" (weights of its best validation epoch {run.weights_epoch})"
            if run.weights_epoch != run.epoch
            else ""
        )
    )


@app.command()
def plot(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
) -> None:
    """Redraw a run's PNG plots from its metrics and recorded activity.

    It only reads files (metrics.jsonl, activity.safetensors, recorded by train on the run's
    device) and runs no model, so it takes no --device.
    """
    from .plots import plot_run

    for path in plot_run(run_dir):
        typer.echo(str(path))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    inputs: list[Path] = typer.Argument(  # noqa: B008
        ...,
        help="Image files (the run's input size), .npz files with an array x, or event files "
        "(runs on event sets).",
    ),
    format: str = typer.Option("table", "--format", help="Output. One of: table | json."),
    device: str = typer.Option("auto", help=_DEVICE_HELP),
) -> None:
    """Classify files with a trained run: class index, name and probabilities per sample."""
    from .training.predict import format_predictions, predict_files

    if format not in ("table", "json"):
        raise ConfigError(f"unknown format {format!r}; choose one of table, json")
    rows = predict_files(run_dir, inputs, device=device)
    typer.echo(format_predictions(rows, format))


@app.command()
def experiment(
    name: str = typer.Argument(None, help="Experiment to run; leave out to list them."),
    quick: bool = typer.Option(False, "--quick", help="A small version for tests and CI."),
    seeds: int = typer.Option(
        None, help="Seeds per arm (0, 1, ..., N-1); default 5, or 2 with --quick."
    ),
    out_dir: Path = typer.Option(Path("runs/experiments"), help="Folder for the report folder."),
    progress: bool = typer.Option(False, "--progress/--no-progress", help="Per-run progress."),
    workers: int = typer.Option(
        1,
        help="Forked processes for the runs, one torch thread each (bioleaf-vs-bp, "
        "klif-vs-lif, reset-dependency, noisy-single-step; others refuse).",
    ),
    device: str = typer.Option("auto", help=_DEVICE_HELP + " Every arm runs there."),
    resume: Path = typer.Option(
        None,
        help="Continue the interrupted experiment in this folder (give the settings it started "
        "with): finished runs are loaded, checkpointed ones resumed, the rest runs again.",
    ),
) -> None:
    """Run both arms of a method comparison and write report.md, report.json and plots."""
    from .experiments import EXPERIMENTS, run_experiment

    if name is None:
        for key in EXPERIMENTS.names():
            typer.echo(f"{key:24s} {EXPERIMENTS.get(key).title}")
        return
    report, folder = run_experiment(
        name, quick=quick, seeds=seeds, out_dir=out_dir, progress=progress, workers=workers,
        device=device, resume=resume,
    )  # fmt: skip
    held = {True: "held", False: "did not hold", None: "not decided"}[report.held]
    typer.echo(f"claim {held}: {report.verdict}")
    typer.echo(f"report written to {folder / 'report.md'}")


def _export_commands() -> None:
    from .export.cli import export_command, import_command

    app.command("export")(export_command)
    app.command("import")(import_command)


_export_commands()


def _compression_commands() -> None:
    from .compression.cli import compress_command, decompress_command

    app.command("compress")(compress_command)
    app.command("decompress")(decompress_command)


_compression_commands()


@app.command()
def attack(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    attack: str = typer.Option(
        ...,
        help="Attack. One of: fgsm | pgd | adaptive | adaptive-surrogate | transfer | square.",
    ),
    eps: str = typer.Option(
        ...,
        help="Budgets in [0, 1] pixel units, e.g. 0,0.05,0.1,0.3 (L2: up to √pixels). Each "
        "attack and ε is kept in attack.json.",
    ),
    steps: int = typer.Option(
        None, help="PGD steps (pgd, adaptive, adaptive-surrogate, transfer; default 20)."
    ),
    norm: str = typer.Option(
        None,
        help="Norm (pgd, adaptive, adaptive-surrogate, transfer, square). One of: linf | l2 "
        "(default linf).",
    ),
    samples: int = typer.Option(1000, help="Test images attacked (a seeded subset)."),
    source: Path = typer.Option(None, help="Transfer attack: the source run directory."),
    out_dir: Path = typer.Option(None, help="Where attack.json / attack.png go (default: run)."),
    device: str = typer.Option("auto", help=_DEVICE_HELP),
    robustbench: bool = typer.Option(
        False,
        "--robustbench",
        help="Also write a RobustBench-style record per ε (robustbench-<norm>-<eps>.json: "
        "threat model, ε, clean, robust and per-image worst-case accuracy, n, seed, version, "
        "commit).",
    ),
) -> None:
    """Attack a trained run; writes attack.json (robust accuracy per ε) and an accuracy-vs-ε
    PNG."""
    from .security.cli import attack_command, parse_eps

    result = attack_command(
        run_dir, attack, parse_eps(eps), steps, norm, samples=samples, source=source,
        out_dir=out_dir, device=device, robustbench=robustbench,
    )  # fmt: skip
    for e, acc in zip(result["eps"], result["robust_accuracy"], strict=True):
        typer.echo(f"eps {e:g}: robust accuracy {acc:.2%}")


backdoor_app = typer.Typer(
    help="Backdoors: find a run's attacked class and remove its backdoor (MESA).",
    no_args_is_help=True,
)
app.add_typer(backdoor_app, name="backdoor")


@backdoor_app.command("scan")
def backdoor_scan(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    steps: int = typer.Option(50, help="Trigger-generator steps per class."),
    samples: int = typer.Option(1000, help="Clean images if the run held out no validation."),
    seed: int = typer.Option(0, help="Seed of the search."),
    out_dir: Path = typer.Option(None, help="Where backdoor_scan.json goes (default: run)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
    device: str = typer.Option("auto", help=_DEVICE_HELP),
) -> None:
    """Search triggers for every class; the attacked class is the one whose triggers succeed."""
    from .security.backdoor_cli import scan_command

    r = scan_command(
        run_dir, steps=steps, samples=samples, seed=seed, out_dir=out_dir, progress=progress,
        device=device,
    )  # fmt: skip
    for k, score in enumerate(r["scores"]):
        typer.echo(f"class {k}: trigger success {score:.2%}")
    typer.echo(f"suspected target: class {r['target']} (anomaly index {r['anomaly_index']:.1f})")


@backdoor_app.command("defend")
def backdoor_defend(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    target: str = typer.Option("auto", help="The attacked class, or auto to detect it."),
    defense: str = typer.Option("mesa", help="One of: mesa | single | true | clean."),
    betas: str = typer.Option("0.9,0.8,0.5", help="MESA thresholds β, one generator each."),
    alpha: float = typer.Option(0.1, help="MESA weight α of the entropy (MINE) term."),
    mesa_steps: int = typer.Option(0, help="Generator steps per β (0: 10 epochs of data)."),
    scan_steps: int = typer.Option(50, help="With --target auto: search steps per class."),
    finetune_epochs: int = typer.Option(10, help="Fine-tuning epochs."),
    finetune_lr: float = typer.Option(1e-2, help="Fine-tuning SGD learning rate."),
    trigger_fraction: float = typer.Option(0.2, help="Share of each batch given a trigger."),
    samples: int = typer.Option(1000, help="Clean images if the run held out no validation."),
    seed: int = typer.Option(0, help="Seed of the search and the fine-tuning."),
    out_dir: Path = typer.Option(None, help="Where results go (default: the run, and beside it)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
    device: str = typer.Option("auto", help=_DEVICE_HELP),
) -> None:
    """Remove a backdoor: model its triggers (MESA) or a baseline's, fine-tune with correct
    labels; writes backdoor_defend.json, trigger grids and a defended run."""
    from .security.backdoor_cli import defend_command, parse_betas
    from .security.mesa import FinetuneOptions

    ft = FinetuneOptions(lr=finetune_lr, epochs=finetune_epochs, trigger_fraction=trigger_fraction)
    r = defend_command(
        run_dir, target, defense=defense, betas=parse_betas(betas), alpha=alpha,
        mesa_steps=mesa_steps, scan_steps=scan_steps, finetune_options=ft, samples=samples,
        seed=seed, out_dir=out_dir, progress=progress, device=device,
    )  # fmt: skip
    for when in ("before", "after"):
        m = r[when]
        asr = "n/a" if m["asr"] is None else f"{m['asr']:.2%}"
        typer.echo(f"{when}: clean accuracy {m['clean_accuracy']:.2%}, attack success {asr}")
    typer.echo(f"target class {r['target']}; defended run written to {r['defended_run']}")


@data_app.command("list")
def data_list(
    data_root: Path = typer.Option(None, help="Folder holding file-based datasets."),
) -> None:
    """Show each dataset, whether its files are found, and where they go (full paths)."""
    from . import data

    if data_root is not None and data_root.exists() and not data_root.is_dir():
        raise ConfigError(f"--data-root {data_root} is a file; pass the folder holding datasets")
    rows = data.catalog(str(data_root) if data_root else None)
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        found = "found    " if row["found"] else "not found"
        typer.echo(f"{row['name']:<{width}}  {row['kind']:<8}  {found}  {row['where']}")


def _usage_errors() -> tuple[type[Exception], ...]:
    """Usage-error classes: typer >= 0.2x vendors click; older typer uses click itself."""
    classes: list[type[Exception]] = []
    vendored = getattr(typer.exceptions, "TyperException", None)
    if vendored is not None:
        classes.append(vendored)
    try:
        import click

        classes.append(click.ClickException)
    except ImportError:
        pass
    return tuple(classes)


def main() -> None:
    """Entry point: spikeweave errors and usage errors become one ``error:`` line, exit 2."""
    try:
        code = app(standalone_mode=False)
    except SpikeweaveError as exc:
        _fail(str(exc))
    except _usage_errors() as exc:
        message = getattr(exc, "format_message", None)
        text = message() if callable(message) else str(exc)
        if not text.strip():  # no arguments: the usage was shown already, not a bare "error:"
            sys.exit(2)
        _fail(text)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - only a peer's failure is reported, not swallowed
        if not _peer_failure(exc):
            raise
        typer.echo(peer_failure_line(exc), err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _peer_failure(exc: Exception) -> bool:
    """A torch.distributed error in a torchrun job (a dead or timed-out peer)."""
    import os

    if "WORLD_SIZE" not in os.environ:
        return False
    import torch.distributed as dist

    dist_error = getattr(dist, "DistError", ())
    return isinstance(exc, dist_error) or peer_failure_message(str(exc))


_PEER_FAILURE = ("connection closed by peer", "connection reset", "timed out")


def peer_failure_message(text: str) -> bool:
    """Whether ``text`` is what gloo says when another process died or hung; case-insensitive,
    as gloo writes both "timed out" and "Timed out" (a stopped peer gives the latter)."""
    lowered = text.lower()
    return any(key in lowered for key in _PEER_FAILURE)


def peer_failure_line(exc: BaseException) -> str:
    """The one line printed when a peer failed: torch's message carries a C++ stack after
    its first line, which is dropped."""
    lines = str(exc).strip().splitlines()
    first = " ".join(lines[0].split())[:200] if lines else ""
    return (
        "error: another training process failed or was killed, so this one stopped "
        f"({type(exc).__name__}: {first})"
    )


def _fail(message: str) -> None:
    typer.echo("error: " + " ".join(message.split()), err=True)
    sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
