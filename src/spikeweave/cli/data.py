"""``spikeweave data list``: each dataset, whether its files are found, and where they go."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError


def data_list(
    data_root: Path = typer.Option(None, help="Folder holding file-based datasets."),
) -> None:
    """Show each dataset, whether its files are found, and where they go (full paths)."""
    from .. import data

    if data_root is not None and data_root.exists() and not data_root.is_dir():
        raise ConfigError(f"--data-root {data_root} is a file; pass the folder holding datasets")
    rows = data.catalog(str(data_root) if data_root else None)
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        found = "found    " if row["found"] else "not found"
        typer.echo(f"{row['name']:<{width}}  {row['kind']:<8}  {found}  {row['where']}")
