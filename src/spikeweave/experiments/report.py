"""Comparison reports: the paper's claim, our measured numbers (mean ± sample SD, ddof=1), the
verdict by part, and the per-image record that lets anyone redo the analysis.

``report.json`` holds a top-level ``per_image`` key: every arm's per-image test correctness
for every seed, bit-packed (:func:`pack_per_image`; read back with :func:`load_per_image`).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import DataError
from .stats import Part

__all__ = [
    "Table",
    "Report",
    "mean_std",
    "fmt_pm",
    "merge_parts",
    "pack_per_image",
    "load_per_image",
    "PER_IMAGE_FORMAT",
    "TEST_ORDER",
]

PER_IMAGE_FORMAT = "packbits-base64/1"
"""``per_image`` encoding: per arm, the bool ``[seeds, images]`` matrix flattened row-major,
``np.packbits`` (big bit order, the last byte zero-padded) and base64."""
TEST_ORDER = "the test split in its stored order (column i = test image i)"
"""How a ``per_image`` column maps to a test image: every experiment evaluates the test split
with an unshuffled loader (:func:`~.selection.per_image`)."""
_MAX_PER_IMAGE_BITS = 1 << 32  # 512 MiB packed: far beyond any test set × seeds we run


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1, the one SD of every table and figure; 0
    for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt_pm(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``"mean ± std (n=N)"`` of ``values·scale``."""
    m, s = mean_std([v * scale for v in values])
    return f"{m:.{digits}f} ± {s:.{digits}f} (n={len(values)})"


def pack_per_image(
    per_image: Mapping[str, Sequence[Any]], seeds: Sequence[int] | None = None,
    order: str = TEST_ORDER,
) -> dict[str, Any]:  # fmt: skip
    """The ``report.json`` ``per_image`` record of ``{arm: [bool [N] per seed]}``: format,
    the test-set ``order``, and per arm its ``shape`` ``[S, N]``, ``seeds`` and ``bits``."""
    arms = {}
    for arm, rows in per_image.items():
        m = np.asarray([np.asarray(r, dtype=bool) for r in rows], dtype=bool)
        if m.ndim != 2:
            raise ValueError(f"per-image correctness of {arm!r} must be [seeds, images]")
        bits = base64.b64encode(np.packbits(m.reshape(-1)).tobytes()).decode("ascii")
        entry: dict[str, Any] = {"shape": list(m.shape), "bits": bits}
        if seeds is not None and len(seeds) == m.shape[0]:
            entry["seeds"] = [int(x) for x in seeds]
        arms[str(arm)] = entry
    return {"format": PER_IMAGE_FORMAT, "order": order, "arms": arms}


def load_per_image(source: str | Path | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every arm's per-image correctness (bool ``[seeds, images]``) from a report folder, its
    ``report.json``, or the parsed report (or its ``per_image`` record). The file is checked
    as untrusted: format, shapes and packed lengths must agree before anything is unpacked;
    a mismatch is a :class:`~spikeweave.errors.DataError`."""
    if isinstance(source, Mapping):
        record = source.get("per_image", source)
    else:
        path = Path(source)
        path = path / "report.json" if path.is_dir() else path
        try:
            record = json.loads(path.read_text()).get("per_image")
        except (OSError, ValueError, AttributeError) as exc:
            raise DataError(f"cannot read per-image record from {path}: {exc}") from None
    if not isinstance(record, Mapping) or record.get("format") != PER_IMAGE_FORMAT:
        raise DataError(f"no per-image record in format {PER_IMAGE_FORMAT!r}")
    arms = record.get("arms")
    if not isinstance(arms, Mapping):
        raise DataError("per-image record has no arms")
    out = {}
    for arm, entry in arms.items():
        shape = entry.get("shape") if isinstance(entry, Mapping) else None
        if (not isinstance(shape, list) or len(shape) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                           for x in shape)):  # fmt: skip
            raise DataError(f"per-image record of {arm!r}: shape must be [seeds, images]")
        n_bits = shape[0] * shape[1]
        if n_bits > _MAX_PER_IMAGE_BITS:
            raise DataError(f"per-image record of {arm!r}: {n_bits} bits exceed the limit")
        bits = entry.get("bits")
        if not isinstance(bits, str) or len(bits) != 4 * math.ceil(math.ceil(n_bits / 8) / 3):
            raise DataError(f"per-image record of {arm!r}: packed length does not match {shape}")
        try:
            raw = base64.b64decode(bits, validate=True)
        except (binascii.Error, ValueError):
            raise DataError(f"per-image record of {arm!r}: bits are not base64") from None
        if len(raw) != math.ceil(n_bits / 8):
            raise DataError(f"per-image record of {arm!r}: packed length does not match {shape}")
        flat = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n_bits)
        out[str(arm)] = flat.astype(bool).reshape(shape)
    return out


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
    inconclusive / not testable / undecidable at this budget, with the test that decided it."""
    per_image: dict[str, Any] = field(default_factory=dict)
    """``{arm: [bool [N] per seed]}``: each arm's per-image test correctness, written to
    ``report.json`` as the packed ``per_image`` record (arms of merged parts carry their
    tag). Arms with no per-image evaluation are absent."""

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
            {a: list(m) for a, m in load_per_image(d).items()} if d.get("per_image") else {},
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
        atomic_write_bytes(md_path, ("\n".join(md) + "\n").encode())
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
            "per_image": pack_per_image(self.per_image, self.setup.get("seeds")),
        }
        atomic_write_bytes(json_path, json.dumps(payload, indent=2, default=str).encode())
        atomic_write_bytes(out_dir / "report.html", self.html(out_dir).encode())
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
    an optional ``per_image`` (``{arm: [bool [N] per seed]}``) is kept as ``[tag] arm``;
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
        per_image={
            f"[{r['tag']}] {arm}": rows
            for r in parts
            for arm, rows in r.get("per_image", {}).items()
        },
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
