"""Comparison reports: the paper's claim, our measured numbers (mean ± std), and the verdict."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Table", "Report", "mean_std", "fmt_pm"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt_pm(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``"mean ± std (n=N)"`` of ``values·scale``."""
    m, s = mean_std([v * scale for v in values])
    return f"{m:.{digits}f} ± {s:.{digits}f} (n={len(values)})"


@dataclass
class Table:
    """A titled table: ``columns`` names and ``rows`` of cells (str or numbers)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def markdown(self) -> str:  # noqa: D102
        def cell(v: Any) -> str:
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        lines = [
            f"### {self.title}",
            "",
            "| " + " | ".join(self.columns) + " |",
            "|" + "---|" * len(self.columns),
        ]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Report:
    """What an experiment found. ``held`` is True/False when the claim was tested, None when the
    run was too small to say (e.g. ``--quick``)."""

    name: str
    title: str
    claim: str
    setup: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    verdict: str = ""
    held: bool | None = None
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write ``report.md`` and ``report.json`` into ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        md = [f"# {self.title}", "", f"**Claim tested.** {self.claim}", ""]
        held = {True: "held", False: "did not hold", None: "not decided"}[self.held]
        md += [f"**Result: the claim {held} on this data.** {self.verdict}", "", "## Set-up", ""]
        md += [f"- {k}: {v}" for k, v in self.setup.items()]
        for table in self.tables:
            md += ["", table.markdown()]
        if self.figures:
            md += ["", "## Figures", ""] + [
                f"![{Path(f).stem}]({Path(f).name})" for f in self.figures
            ]
        if self.notes:
            md += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        md_path, json_path = out_dir / "report.md", out_dir / "report.json"
        md_path.write_text("\n".join(md) + "\n")
        payload = {
            "name": self.name,
            "title": self.title,
            "claim": self.claim,
            "held": self.held,
            "verdict": self.verdict,
            "setup": self.setup,
            "results": self.results,
            "tables": [
                {"title": t.title, "columns": t.columns, "rows": t.rows} for t in self.tables
            ],
            "figures": [Path(f).name for f in self.figures],
            "notes": self.notes,
        }
        json_path.write_text(json.dumps(payload, indent=2, default=str))
        return md_path, json_path
