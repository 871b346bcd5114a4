"""``spikeweave export`` and ``spikeweave import``: plain functions with typer parameters.

Wire them into the main app (``spikeweave/cli/__init__.py``) with::

    from .export.cli import export_command, import_command
    app.command("export")(export_command)
    app.command("import")(import_command)

Errors are spikeweave errors, which the main entry point prints as one ``error:`` line.
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["export_command", "import_command"]


def export_command(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    path: Path = typer.Argument(..., help="The NIR file to write, e.g. model.nir."),
    dt: float = typer.Option(
        None,
        "--dt",
        help="Seconds per simulation step; tau (steps) is written as tau·dt seconds. "
        "Required, except with --for snntorch (which assumes 1e-4).",
    ),
    peer: str = typer.Option(
        "nir",
        "--for",
        help="nir | norse | snntorch. The file is the same for all (Flatten dims counted from "
        "the end load in nir, Norse and snnTorch alike); norse/snntorch also refuse what that "
        "library would load as a different network (docs/nir.md).",
    ),
) -> None:
    """Write a run's model as a NIR graph (IF/LIF with hard reset, Linear, Conv2d, pooling)."""
    from ..errors import ConfigError
    from .nir import PEERS, SNNTORCH_DT
    from .runs import export_run

    if peer not in PEERS:
        raise ConfigError(f"--for must be one of {', '.join(PEERS)}, got {peer!r}")
    if dt is None:
        if peer != "snntorch":
            raise ConfigError("export needs --dt, the seconds per simulation step (e.g. 0.001)")
        dt = SNNTORCH_DT
    out = export_run(run_dir, path, dt, peer=peer)
    loads = {
        "nir": "",
        "norse": f"; load in Norse with norse.torch.from_nir(graph, dt={dt:g})",
        "snntorch": "; load in snnTorch with snntorch.import_nir.import_from_nir(graph)",
    }[peer]
    typer.echo(f"wrote {out} (dt = {dt:g} s per step){loads}")


def import_command(
    path: Path = typer.Argument(..., help="A NIR file (nir.write), e.g. from snnTorch or Norse."),
    out_dir: Path = typer.Argument(..., help="The run directory to create (new or empty)."),
    dataset: str = typer.Option(
        None, help="Dataset the graph was trained on (default: recorded in the file)."
    ),
    steps: int = typer.Option(None, "--steps", "-T", help="Time steps T (default: recorded)."),
    encoder: str = typer.Option(None, help="Input encoder (default: recorded, else direct)."),
    dt: float = typer.Option(
        None, "--dt", help="Seconds per step (default: recorded in the file; snnTorch: 1e-4)."
    ),
    device: str = typer.Option(
        "auto",
        help="Where the import's check runs (the rebuilt model against the graph): auto (CUDA "
        "when available, else the CPU) | cpu | cuda | cuda:N; a GPU that is not there is an "
        "error.",
    ),
) -> None:
    """Turn an MLP NIR graph into a run directory that `spikeweave eval` accepts."""
    from .runs import import_run

    out = import_run(
        path, out_dir, dataset=dataset, steps=steps, encoder=encoder, dt=dt, device=device
    )
    typer.echo(f"run written to {out}; evaluate it with `spikeweave eval {out}`")
