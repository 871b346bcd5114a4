"""Comparison reports: the paper's claim, our measured numbers (mean ± std), and the verdict."""

from __future__ import annotations

import base64
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from .stats import Part

__all__ = ["Table", "Report", "mean_std", "fmt_pm", "merge_parts"]


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
    parts: list[Any] = field(default_factory=list)
    """Verdict parts (:class:`spikeweave.experiments.stats.Part`), each held / not held /
    inconclusive with the test that decided it."""

    @property
    def outcome(self) -> str:
        """The verdict's headline sentence."""
        return {
            True: "the claim held on this data.",
            False: "the claim did not hold on this data.",
            None: "not decided on this data.",
        }[self.held]

    @classmethod
    def load(cls, folder: Path) -> Report:
        """The report saved in ``folder/report.json`` (figures are looked up in ``folder``)."""
        d = json.loads((Path(folder) / "report.json").read_text())
        tables = [Table(t["title"], t["columns"], t["rows"]) for t in d.get("tables", [])]
        return cls(
            d["name"], d["title"], d["claim"], d.get("setup", {}), tables,
            [str(Path(folder) / f) for f in d.get("figures", [])], d.get("verdict", ""),
            d.get("held"), d.get("results", {}), d.get("notes", []),
            [Part(**{**p, "interval": tuple(p["interval"])}) for p in d.get("parts", [])],
        )  # fmt: skip

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write ``report.md``, ``report.json`` and ``report.html`` into ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        md = [f"# {self.title}", "", f"**Claim tested.** {self.claim}", ""]
        md += [f"**Result: {self.outcome}** {self.verdict}", ""]
        if self.parts:
            md += ["## Verdict by part", ""] + [f"- {p.sentence()}" for p in self.parts] + [""]
        md += ["## Set-up", ""]
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
            "parts": [p.to_dict() for p in self.parts],
        }
        json_path.write_text(json.dumps(payload, indent=2, default=str))
        (out_dir / "report.html").write_text(self.html(out_dir))
        return md_path, json_path

    def html(self, out_dir: Path) -> str:
        """A self-contained HTML page: every figure is embedded as a PNG data URI, so the file
        opens anywhere in a browser without its folder."""
        colour = {True: "#1b7a3a", False: "#b3261e", None: "#6b6b6b"}[self.held]
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(self.title)}</title>",
            f"<style>{_CSS}</style></head><body><main>",
            f"<h1>{escape(self.title)}</h1>",
            f'<p class="claim"><strong>Claim tested.</strong> {escape(self.claim)}</p>',
            f'<p class="verdict" style="border-color:{colour}"><strong style="color:{colour}">'
            f"{escape(self.outcome.capitalize())}</strong> {escape(self.verdict)}</p>",
            *(
                ["<h2>Verdict by part</h2><ul>"]
                + [f"<li>{escape(p.sentence())}</li>" for p in self.parts]
                + ["</ul>"]
                if self.parts
                else []
            ),
            "<h2>Set-up</h2><ul>",
            *(f"<li><b>{escape(str(k))}</b>: {escape(str(v))}</li>" for k, v in self.setup.items()),
            "</ul>",
        ]
        for table in self.tables:
            parts.append(f"<h2>{escape(table.title)}</h2><table><thead><tr>")
            parts += [f"<th>{escape(str(c))}</th>" for c in table.columns]
            parts.append("</tr></thead><tbody>")
            for row in table.rows:
                cells = (f"{v:.4g}" if isinstance(v, float) else str(v) for v in row)
                parts.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
            parts.append("</tbody></table>")
        if self.figures:
            parts.append("<h2>Figures</h2>")
            for fig in self.figures:
                path = out_dir / Path(fig).name
                data = base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""
                alt = escape(Path(fig).stem)
                parts.append(
                    f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{alt}</figcaption></figure>"
                )
        if self.notes:
            parts.append("<h2>Notes</h2><ul>")
            parts += [f"<li>{escape(n)}</li>" for n in self.notes]
            parts.append("</ul>")
        parts.append("</main></body></html>")
        return "\n".join(parts) + "\n"


def merge_parts(
    experiment: Any,
    parts: Sequence[dict[str, Any]],
    held: bool | None,
    notes: Sequence[str] = (),
    tag_verdicts: bool = False,
) -> Report:
    """One report of an experiment run as several parts (workloads, datasets), each a dict
    with ``tag``, ``setup``, ``tables``, ``figures``, ``verdict``, ``parts``, ``results`` and
    optionally ``notes``: setups become ``part 1``, ``part 2``, ...; tables, figures, verdict
    parts and notes are concatenated in order (``notes`` first); results are keyed by tag;
    verdicts are joined, each prefixed ``[tag]`` with ``tag_verdicts``. ``experiment`` gives
    ``name``, ``title`` and ``claim``; ``held`` is decided by the caller."""
    return Report(
        name=experiment.name,
        title=experiment.title,
        claim=experiment.claim,
        setup={f"part {i + 1}": r["setup"] for i, r in enumerate(parts)},
        tables=[t for r in parts for t in r["tables"]],
        figures=[f for r in parts for f in r["figures"]],
        verdict=" ".join(
            f"[{r['tag']}] {r['verdict']}" if tag_verdicts else r["verdict"] for r in parts
        ),
        held=held,
        results={r["tag"]: r["results"] for r in parts},
        notes=[*notes, *(n for r in parts for n in r.get("notes", ()))],
        parts=[p for r in parts for p in r["parts"]],
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#fafafa;color:#1d1d1d}"
    "main{max-width:980px;margin:0 auto;padding:24px}"
    "h1{font-size:1.6em}h2{font-size:1.15em;margin-top:1.6em}"
    ".verdict{border-left:5px solid;padding:8px 14px;background:#fff}"
    "table{border-collapse:collapse;margin:8px 0;background:#fff}"
    "th,td{border:1px solid #ccc;padding:4px 10px;text-align:left}"
    "th{background:#eee}figure{margin:16px 0}img{max-width:100%;border:1px solid #ddd}"
    "figcaption{color:#555;font-size:.9em}"
)
