"""``spikeweave experiment``: list the method comparisons, or run one and print its verdict."""

from __future__ import annotations

from pathlib import Path

import typer

from .help_text import DEVICE_HELP


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
        help="Forked processes for the runs (and the sweeps, attacks and defenses after "
        "training), one torch thread each (bioleaf-vs-bp, klif-vs-lif, mesa, na-vs-bptt, "
        "noisy-single-step, oscillation-defense, reset-dependency; others refuse).",
    ),
    device: str = typer.Option("auto", help=DEVICE_HELP + " Every arm runs there."),
    resume: Path = typer.Option(
        None,
        help="Continue the interrupted experiment in this folder (give the settings it started "
        "with): finished runs and saved results are loaded, checkpointed runs resumed, the "
        "rest runs again.",
    ),
) -> None:
    """Run both arms of a method comparison and write report.md, report.json and plots."""
    from ..experiments import EXPERIMENTS, run_experiment

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
