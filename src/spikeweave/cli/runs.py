"""Commands on a trained run directory: ``eval``, ``plot`` and ``predict``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from .help_text import DEVICE_HELP


def evaluate(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    split: str = typer.Option(
        "test", help="Which split to evaluate. One of: test | train | val (if held out)."
    ),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Evaluate a run's latest checkpoint; writes eval.json into the run."""
    from ..training import RunDir, load_run

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


def plot(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
) -> None:
    """Redraw a run's PNG plots from its metrics and recorded activity.

    It only reads files (metrics.jsonl, activity.safetensors, recorded by train on the run's
    device) and runs no model, so it takes no --device.
    """
    from ..plots import plot_run

    for path in plot_run(run_dir):
        typer.echo(str(path))


def predict(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    inputs: list[Path] = typer.Argument(  # noqa: B008
        ...,
        help="Image files (the run's input size), .npz files with an array x, or event files "
        "(runs on event sets).",
    ),
    format: str = typer.Option("table", "--format", help="Output. One of: table | json."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Classify files with a trained run: class index, name and probabilities per sample."""
    from ..training.predict import format_predictions, predict_files

    if format not in ("table", "json"):
        raise ConfigError(f"unknown format {format!r}; choose one of table, json")
    rows = predict_files(run_dir, inputs, device=device)
    typer.echo(format_predictions(rows, format))
