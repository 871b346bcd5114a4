"""``spikeweave compress`` and ``spikeweave decompress``: plain functions with typer parameters.

Wire them into the main app (``spikeweave/cli/__init__.py``) with::

    from .compression.cli import compress_command, decompress_command
    app.command("compress")(compress_command)
    app.command("decompress")(decompress_command)

Errors are spikeweave errors, which the main entry point prints as one ``error:`` line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError

__all__ = ["compress_command", "decompress_command", "PROGRESS_MIN_BYTES"]

PROGRESS_MIN_BYTES = 16 << 20
"""Files of at least 16 MiB get a progress bar (on a terminal); smaller ones finish in < 1 s."""


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over the raw stream bytes when ``enabled`` and stderr is a TTY."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def compress_command(
    in_path: Path = typer.Argument(..., help="Event file: N-MNIST .bin/.bs2, AEDAT 2/3.1/4."),
    out_path: Path = typer.Argument(
        None, help="The .sfev file to write (optional with --stats: then nothing is written)."
    ),
    rate: float = typer.Option(
        None,
        "--rate",
        help="Sampled mode: keep events at this fraction of pixels per window (e.g. 0.1).",
    ),
    stats: bool = typer.Option(
        False, "--stats", help="Print sizes: bytes/event, per stream, ratio vs xz -9e."
    ),
    window_us: int = typer.Option(
        None, "--window-us", help="Sampled mode: window length in µs (default 10000)."
    ),
    sampler: str = typer.Option(
        None,
        "--sampler",
        help="Sampled mode: 'activity' (the busiest pixels; the default with --rate, where the "
        "trained sampler does not beat it), 'spiking' (the built-in trained spiking sampler; "
        "the default with --size-budget, where it is ahead by fractions of a dB), a --method "
        "sampler RUN_DIR or sampler .safetensors file, or 'random'.",
    ),
    seed: int = typer.Option(0, "--seed", help="Sampled mode: seed of --sampler random."),
    codec: str = typer.Option(
        "auto",
        help="Codec: auto (default: ctx3 where a C compiler built its coder, else zstd), ctx3 "
        "(format version 3: per-symbol adaptive range coding, the smallest files, random "
        "access by time), rans (version 4: static tables and interleaved rANS, larger files "
        "than ctx3 but several times faster to decompress), zstd, lzma, or ctx (version 2, "
        "slow).",
    ),
    device: str = typer.Option(
        None,
        "--device",
        help="Sampled mode: where a trained sampler runs: auto (default: CUDA when available) "
        "| cpu | cuda | cuda:N; a GPU that is not there is an error.",
    ),
    size_budget: Annotated[
        Optional[float],  # noqa: UP045 (typer reads the annotation; a plain default for callers)
        typer.Option(
            "--size-budget",
            help="Sampled mode under a size budget, instead of --rate: the file may take at "
            "most this fraction (0 < F <= 1) of the lossless .sfev; keeps the most pixels per "
            "window that fit (default sampler: spiking).",
        ),
    ] = None,
) -> None:
    """Compress an event recording into a .sfev file (lossless unless --rate or --size-budget
    is given)."""
    from .codec import resolve_codec
    from .files import compress_file, xz_size
    from .sampling import DEFAULT_BUDGET_SAMPLER, DEFAULT_SAMPLER

    if rate is not None and size_budget is not None:
        raise ConfigError("give one of --rate R and --size-budget F, not both")
    sampled = rate is not None or size_budget is not None
    if not sampled and (
        sampler is not None or seed != 0 or window_us is not None or device is not None
    ):
        raise ConfigError(
            "--sampler, --seed, --window-us and --device choose how sampled mode samples: "
            "add --rate R or --size-budget F"
        )
    if size_budget is not None:
        from .budget import check_size_budget

        check_size_budget(size_budget)  # before the recording is read
    default_sampler = DEFAULT_SAMPLER if size_budget is None else DEFAULT_BUDGET_SAMPLER
    if window_us is not None and window_us <= 0:
        raise ConfigError(f"--window-us must be a positive number of µs, got {window_us}")
    if out_path is None and not stats:
        raise ConfigError("give an output path (OUT.sfev), or --stats to only print sizes")
    in_size = in_path.stat().st_size if in_path.is_file() else 0
    with _progress("compress", in_size >= PROGRESS_MIN_BYTES) as progress:
        result = compress_file(
            in_path,
            out_path,
            rate=rate,
            window_us=window_us,
            sampler=default_sampler if sampler is None else sampler,
            seed=seed,
            codec=resolve_codec(codec),
            progress=progress,
            device="auto" if device is None else device,
            size_budget=size_budget,
        )
    if result.out_path is not None:
        typer.echo(
            f"wrote {result.out_path}: {result.n_kept} events, {result.compressed_bytes} bytes "
            f"({result.bytes_per_event:.3f} bytes/event, "
            f"{result.compressed_bytes / result.original_bytes:.3f}x the original)"
        )
    if stats:
        xz = xz_size(in_path.read_bytes())
        w, h = result.sensor_size
        typer.echo(f"file             {in_path} ({result.format}, {w}x{h} sensor)")
        typer.echo(f"events           {result.n_events}")
        if result.meta is not None:
            m = result.meta
            which = m["sampler"]
            if "sampler_source" in m:
                which += f" ({m['sampler_source']}, weights {m['sampler_sha256']})"
            typer.echo(
                f"sampled          rate {m['rate']:.3f} (achieved {m['achieved_rate']:.4f}), "
                f"window {m['window_us']} us, sampler {which}; kept {result.n_kept} events "
                f"({100 * m['event_fraction']:.1f} %)"
            )
            if "size_budget" in m:
                typer.echo(
                    f"size budget      {m['size_budget']} x {m['lossless_bytes']} lossless bytes "
                    f"= {m['budget_bytes']} bytes; chose {m['pixels_per_window']} pixels/window "
                    f"(rate {m['achieved_rate']:.4f}); file {result.compressed_bytes} bytes = "
                    f"{m['size_fraction']:.4f} x lossless"
                )
        typer.echo(f"original         {result.original_bytes} bytes")
        typer.echo(f"xz -9e           {xz} bytes")
        typer.echo(
            f"sfev ({resolve_codec(codec)})     {result.compressed_bytes} bytes, "
            f"{result.bytes_per_event:.3f} bytes/event, {result.compressed_bytes / xz:.3f}x xz -9e"
        )
        typer.echo("streams          " + ", ".join(f"{k} {v}" for k, v in result.streams.items()))


def decompress_command(
    in_path: Path = typer.Argument(..., help="A .sfev file written by `spikeweave compress`."),
    out_path: Path = typer.Argument(
        ..., help="Output: .npz (arrays x, y, p, t) or .bin (N-MNIST 5-byte events)."
    ),
    from_us: Annotated[
        Optional[int],  # noqa: UP045 (typer reads the annotation)
        typer.Option("--from-us", help="Only events at or after this time (µs, the file's clock)."),
    ] = None,
    to_us: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--to-us",
            help="Only events before this time (µs); ctx files decode only the blocks "
            "covering the range.",
        ),
    ] = None,
) -> None:
    """Decompress a .sfev file into N-MNIST .bin or a numpy .npz."""
    from .files import decompress_to_file

    in_size = in_path.stat().st_size if in_path.is_file() else 0
    # a .sfev file is ~4x smaller than the recording, so its bar starts at a quarter the size
    with _progress("decompress", in_size >= PROGRESS_MIN_BYTES // 4) as progress:
        header = decompress_to_file(
            in_path, out_path, progress=progress, from_us=from_us, to_us=to_us
        )
    kind = "lossless"
    if header.sampled:
        m = header.meta
        kind = f"sampled: rate {m.get('rate')}, sampler {m.get('sampler')}"
        if "sampler_source" in m:
            kind += f" {m['sampler_source']}"
    span = ""
    if from_us is not None or to_us is not None:
        span = f", the events in [{from_us}, {to_us}) us"
    typer.echo(
        f"wrote {out_path}: {header.n_events} events{span} ({kind}, {header.width}x{header.height})"
    )
