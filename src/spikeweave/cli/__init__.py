"""The ``spikeweave`` command: train, evaluate, plot, run experiments and inspect datasets.

Each command lives in its own module (``train``, ``runs``, ``experiment``, ``security``,
``data``; export and compression in their packages); this one wires them and is the entry
point.

Choices and defaults in the help come from the registries and from :class:`TrainConfig`, so
they never drift from what the library accepts; they are read when a command's help is shown,
and every library module is imported inside the command that needs it, so that ``--help`` and
``data list`` start without torch. Every spikeweave error becomes one line ``error: ...`` on
stderr and exit status 2.
"""

from __future__ import annotations

import sys

import typer

from ..errors import SpikeweaveError
from . import data, experiment, runs, security, train
from .help_text import LibraryHelp
from .peer_failure import is_peer_failure, peer_failure_line, peer_failure_message

__all__ = ["app", "main", "peer_failure_line", "peer_failure_message"]

app = typer.Typer(
    help="spikeweave: train spiking neural networks on PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: what is available and where files go.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        from ..version import __version__

        typer.echo(f"spikeweave {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """spikeweave: train spiking neural networks on PyTorch."""


backdoor_app = typer.Typer(
    help="Backdoors: find a run's attacked class and remove its backdoor (MESA).",
    no_args_is_help=True,
)


def _register() -> None:
    """Each command's function, from its module, under its name (in the order ``--help``
    lists them)."""
    from ..compression.cli import compress_command, decompress_command
    from ..export.cli import export_command, import_command

    app.command(cls=LibraryHelp)(train.train)
    app.command("eval")(runs.evaluate)
    app.command()(runs.plot)
    app.command()(runs.predict)
    app.command()(experiment.experiment)
    app.command("export")(export_command)
    app.command("import")(import_command)
    app.command("compress")(compress_command)
    app.command("decompress")(decompress_command)
    app.command()(security.attack)
    app.add_typer(backdoor_app, name="backdoor")
    backdoor_app.command("scan")(security.backdoor_scan)
    backdoor_app.command("defend")(security.backdoor_defend)
    data_app.command("list")(data.data_list)


_register()


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
        if not is_peer_failure(exc):
            raise
        typer.echo(peer_failure_line(exc), err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    typer.echo("error: " + " ".join(message.split()), err=True)
    sys.exit(2)
