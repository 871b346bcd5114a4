"""The ``spikeforge`` command: train, evaluate, plot and inspect datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from .errors import SpikeforgeError

app = typer.Typer(
    help="spikeforge: train spiking neural networks on PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: what is available and where files go.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.command()
def train(
    dataset: str = typer.Option(None, help="digits | mnist5k (embedded) or a file-based dataset."),
    model: str = typer.Option(None, help="convnet | mlp | ann (convnet with ReLU) | ann-mlp."),
    neuron: str = typer.Option(None, help="lif | klif | if | relu (relu trains the ANN twin)."),
    method: str = typer.Option(None, help="Training method, e.g. bptt."),
    steps: int = typer.Option(None, "--steps", "-T", help="Time steps T per sample."),
    epochs: int = typer.Option(None, help="Training epochs."),
    batch_size: int = typer.Option(None, help="Training batch size."),
    lr: float = typer.Option(None, help="Peak learning rate (AdamW)."),
    seed: int = typer.Option(None, help="Seed for initialisation, data order and noise."),
    surrogate: str = typer.Option(
        None, help="atan | sigmoid | fast-sigmoid | rectangular | triangle."
    ),
    reset: str = typer.Option(None, help="hard | soft."),
    tau: float = typer.Option(None, help="Membrane time constant in steps (LIF)."),
    detach_reset: bool = typer.Option(
        None,
        "--detach-reset/--keep-reset-grad",
        help="Detach the reset path in backward (default) or keep it.",
    ),
    encoder: str = typer.Option(None, help="direct | poisson | latency."),
    out_dir: Path = typer.Option(None, help="Folder under which the run directory is created."),
    data_root: Path = typer.Option(None, help="Folder holding file-based datasets."),
    config: Path = typer.Option(None, "--config", help="TOML file with any of these settings."),
    resume: Path = typer.Option(
        None, help="Continue the run in this directory from its checkpoint."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a model; with no options, a LIF conv net on the embedded mnist5k."""
    from .training import TrainConfig, Trainer, load_config

    if resume is not None:
        trainer = Trainer.resume(resume, progress=progress)
        typer.echo(f"resuming {resume} after epoch {trainer.epoch}")
    else:
        values: dict[str, Any] = load_config(config) if config is not None else {}
        given = dict(
            dataset=dataset,
            model=model,
            neuron=neuron,
            method=method,
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            surrogate=surrogate,
            reset=reset,
            tau=tau,
            detach_reset=detach_reset,
            encoder=encoder,
            out_dir=str(out_dir) if out_dir is not None else None,
            data_root=str(data_root) if data_root is not None else None,
        )
        values.update({k: v for k, v in given.items() if v is not None})
        cfg = TrainConfig.from_dict(values, source=str(config) if config else "options")
        trainer = Trainer(cfg, progress=progress)
        typer.echo(
            f"training {cfg.dataset} / {cfg.model} / {cfg.neuron}, T={cfg.effective_steps}, "
            f"{cfg.epochs} epochs, seed {cfg.seed} -> {trainer.run_dir}"
        )
    summary = trainer.fit()
    typer.echo(
        f"test accuracy {summary['test_accuracy']:.2%} (best {summary['best_test_accuracy']:.2%}), "
        f"train accuracy {summary['train_accuracy']:.2%}, {summary['wall_time_s']:.0f} s"
    )
    typer.echo(f"run written to {trainer.run_dir}")


@app.command("eval")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeforge train`."),
    split: str = typer.Option("test", help="test | train."),
) -> None:
    """Evaluate a run's latest checkpoint; writes eval.json into the run."""
    from .training import Trainer

    trainer = Trainer.resume(run_dir, progress=False)
    result = trainer.evaluate(split)
    result["epoch"] = trainer.epoch
    (Path(run_dir) / "eval.json").write_text(json.dumps(result, indent=2))
    typer.echo(
        f"{split} accuracy {result[f'{split}_accuracy']:.2%}  "
        f"loss {result[f'{split}_loss']:.4f}  (epoch {trainer.epoch})"
    )


@app.command()
def plot(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeforge train`."),
) -> None:
    """Redraw a run's PNG plots from its metrics and recorded activity."""
    from .plots import plot_run

    for path in plot_run(run_dir):
        typer.echo(str(path))


@app.command()
def experiment(
    name: str = typer.Argument(None, help="Experiment to run; leave out to list them."),
    quick: bool = typer.Option(False, "--quick", help="A small version for tests and CI."),
    seeds: int = typer.Option(3, help="Seeds per arm (0, 1, ..., N-1)."),
    out_dir: Path = typer.Option(Path("runs/experiments"), help="Folder for the report folder."),
    progress: bool = typer.Option(False, "--progress/--no-progress", help="Per-run progress bars."),
) -> None:
    """Run both arms of a method comparison and write report.md, report.json and plots."""
    from .experiments import (
        EXPERIMENTS,
        catalog,  # noqa: F401
        run_experiment,
    )

    if name is None:
        for key in sorted(EXPERIMENTS):
            typer.echo(f"{key:24s} {EXPERIMENTS[key].title}")
        return
    report, folder = run_experiment(
        name, quick=quick, seeds=seeds, out_dir=out_dir, progress=progress
    )
    held = {True: "held", False: "did not hold", None: "not decided"}[report.held]
    typer.echo(f"claim {held}: {report.verdict}")
    typer.echo(f"report written to {folder / 'report.md'}")


@data_app.command("list")
def data_list(
    data_root: Path = typer.Option(None, help="Folder holding file-based datasets."),
) -> None:
    """Show each dataset, whether its files are found, and where they go."""
    from rich.console import Console
    from rich.table import Table

    from . import data

    table = Table("dataset", "kind", "found", "where the files go")
    for row in data.catalog(str(data_root) if data_root else None):
        table.add_row(row["name"], row["kind"], "yes" if row["found"] else "no", row["where"])
    Console().print(table)


def main() -> None:
    """Entry point: spikeforge errors become a one-line message and exit status 2."""
    try:
        app()
    except SpikeforgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; continue with: spikeforge train --resume RUN_DIR", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
