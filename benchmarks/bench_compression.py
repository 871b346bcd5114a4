"""Event-codec benchmark: .sfev (ctx3, rans, ctx, zstd, lzma) beside xz, zstd, brotli, EVT3.

For every recording (default: the N-MNIST samples and the AEDAT4 sample in
../shared/data/real) it measures sizes (bytes, bytes per event, ratio to `xz -9e` of the
original file) and speeds in million events per second, one core:

- sfev: ``encode_events`` / ``decode_events`` on events already in memory (the codec itself;
  reading the original format is not counted). Each decode is checked to equal the input.
  ``sfev-ctx3`` (format version 3) codes with its compiled coder (``ctx3_native.c``),
  ``sfev-rans`` (version 4) with its compiled coder (``rans_native.c``; the tables are
  counted and written by numpy),
  ``sfev-ctx`` (version 2) decodes with its compiled block decoder (``ctx_native``),
  ``sfev-ctx-py d`` the same files with the Python (constriction) decoder it replaces.
- xz / zstd: the command-line tools on the original file, `-T1`, output to a pipe; their time
  includes starting a process (~1 ms), which dominates on the 5 kB N-MNIST files, so the table
  also gives the AEDAT4 file and the N-MNIST total separately.
- brotli: quality 11 (default window) of the original file, in process (the ``brotli``
  package: a benchmark-only dependency, ``pip install brotli``).
- EVT 3.0: the size of the events in Prophesee's 16-bit vectorised words, from the simple
  encoder in ``benchmarks/evt3.py`` (size only; see there what it approximates).

Sizes are also given in bits per event.

A folder pass (``pass`` in the JSON) decodes every N-MNIST file of the run back to back with
one sfev codec, as a data loader reading a folder of recordings does: one job per codec and
round, shuffled among the others, so the pass starts after unrelated work like every other
job, but only its first file finds the decoder's code and tables cold. Its M events/s (all the
pass's events over its time) is given beside the per-file figure, which times each file after
unrelated work.

``--cpu-time`` times the in-process methods (sfev, brotli) by the process's CPU time
(``time.process_time``) instead of the wall clock, so other load on a shared machine does
not count (its effect on caches and a busy sibling hyperthread still does); the xz and zstd
tools, whose CPU time is not the process's, are then left out.

Methods are interleaved round by round (every file and method once per round, the order
shuffled per round) so load on the shared machine hits all of them alike; the medians over
rounds are reported. Run pinned to one core:

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/bench_compression.py \
        --out benchmarks/results/compression
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from spikeweave.compression import ctx_native, decode_events, encode_events, load_events
from spikeweave.version import git_commit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evt3 import evt3_words  # noqa: E402  (a benchmark helper next to this script)

CODECS = ("ctx3", "rans", "ctx", "zstd", "lzma")

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"


def default_files() -> list[Path]:
    nmnist = sorted((REAL / "nmnist").glob("*/*.bs2")) + sorted((REAL / "nmnist").glob("*/*.bin"))
    return nmnist + [REAL / "aedat4" / "tonic_sample.aedat4"]


def _tool(cmd: list[str], data: bytes) -> tuple[bytes, float]:
    start = time.perf_counter()
    out = subprocess.run(cmd, input=data, capture_output=True, check=True).stdout
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="event files (default: real samples)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--out", type=Path, help="write OUT.md and OUT.json")
    parser.add_argument(
        "--cpu-time", action="store_true", help="CPU time of the in-process methods, no tools"
    )
    args = parser.parse_args()
    files = args.files or default_files()
    tools = {name: shutil.which(name) for name in ("xz", "zstd")}
    missing = [k for k, v in tools.items() if v is None]
    if missing:
        sys.exit(f"install {' and '.join(missing)} (apt-get install -y xz-utils zstd)")
    try:
        import brotli
    except ImportError:
        sys.exit("install brotli (pip install brotli; benchmark only)")

    recs = []
    for path in files:
        events, sensor, fmt = load_events(path)
        raw = path.read_bytes()
        rec = {"file": path.name, "format": fmt, "events": int(events.size), "bytes": len(raw)}
        rec["_events"], rec["_sensor"], rec["_raw"] = events, sensor, raw
        rec["_sfev"] = {c: encode_events(events, sensor, codec=c) for c in CODECS}
        rec["_xz"] = _tool(["xz", "-9e", "-T1", "-c"], raw)[0]
        rec["_zst"] = _tool(["zstd", "-19", "-T1", "-c", "-q"], raw)[0]
        rec["_br"] = brotli.compress(raw, quality=11)
        rec["_evt3"] = 2 * evt3_words(events)
        recs.append(rec)

    clock = time.process_time if args.cpu_time else time.perf_counter

    def job(rec: dict, method: str) -> Callable[[], float]:
        events, sensor = rec["_events"], rec["_sensor"]

        def run() -> float:
            if method == "sfev-ctx-py/d":  # the Python decoder: no compiled library
                library, ctx_native.library = ctx_native.library, lambda name="ctx": None
                try:
                    start = clock()
                    back, _ = decode_events(rec["_sfev"]["ctx"])
                    took = clock() - start
                finally:
                    ctx_native.library = library
                if not np.array_equal(back, events):
                    raise SystemExit(f"{rec['file']}: ctx (Python) round trip differs")
                return took
            if method.startswith("sfev-"):
                codec, step = method[5:].split("/")
                if step == "c":
                    start = clock()
                    encode_events(events, sensor, codec=codec)
                    return clock() - start
                data = rec["_sfev"][codec]
                start = clock()
                back, _ = decode_events(data)
                took = clock() - start
                if not np.array_equal(back, events):
                    raise SystemExit(f"{rec['file']}: {codec} round trip differs")
                return took
            if method in ("brotli/c", "brotli/d"):
                start = clock()
                if method == "brotli/c":
                    brotli.compress(rec["_raw"], quality=11)
                elif brotli.decompress(rec["_br"]) != rec["_raw"]:
                    raise SystemExit(f"{rec['file']}: brotli round trip differs")
                return clock() - start
            if method == "xz/c":
                return _tool(["xz", "-9e", "-T1", "-c"], rec["_raw"])[1]
            if method == "xz/d":
                return _tool(["xz", "-d", "-T1", "-c"], rec["_xz"])[1]
            if method == "zstd/c":
                return _tool(["zstd", "-19", "-T1", "-c", "-q"], rec["_raw"])[1]
            return _tool(["zstd", "-d", "-c", "-q"], rec["_zst"])[1]

        return run

    for name in ("ctx", "ctx3", "rans"):
        if ctx_native.library(name) is None:
            sys.exit(f"no compiled {name} coder: {ctx_native.unavailable_reason(name)}")
    methods = [f"sfev-{c}/{s}" for c in CODECS for s in "cd"] + ["sfev-ctx-py/d"]
    methods += ["brotli/c", "brotli/d"] if args.cpu_time else TOOLS
    times: dict[tuple[str, str], list[float]] = {}
    jobs: list[tuple[dict | None, str]] = [(rec, m) for rec in recs for m in methods]
    folder = [rec for rec in recs if rec["format"] == "nmnist"]
    if len(folder) > 1:
        jobs += [(None, f"pass/{c}") for c in CODECS]

    def folder_pass(codec: str) -> float:
        """Every N-MNIST file decoded back to back with ``codec`` (checked after the clock)."""
        start = clock()
        back = [decode_events(rec["_sfev"][codec])[0] for rec in folder]
        took = clock() - start
        for rec, events in zip(folder, back, strict=True):
            if not np.array_equal(events, rec["_events"]):
                raise SystemExit(f"{rec['file']}: {codec} round trip differs in the folder pass")
        return took

    load_before = os.getloadavg()
    rng = random.Random(0)
    for _ in range(args.repeats):
        rng.shuffle(jobs)
        for rec, m in jobs:
            if rec is None:
                times.setdefault(("pass", m), []).append(folder_pass(m.split("/")[1]))
            else:
                times.setdefault((rec["file"], m), []).append(job(rec, m)())
    load_after = os.getloadavg()

    rows = []
    for rec in recs:
        n = rec["events"]
        xz = len(rec["_xz"])
        row = {k: v for k, v in rec.items() if not k.startswith("_")}
        row["sizes"] = {f"sfev-{c}": len(rec["_sfev"][c]) for c in CODECS}
        row["sizes"].update(
            {
                "xz -9e": xz,
                "zstd -19": len(rec["_zst"]),
                "brotli 11": len(rec["_br"]),
                "EVT 3.0": rec["_evt3"],
            }
        )
        row["bits_per_event"] = {k: 8 * v / n for k, v in row["sizes"].items()}
        row["median_s"] = {m: statistics.median(times[(rec["file"], m)]) for m in methods}
        row["mev_s"] = {m: n / t / 1e6 for m, t in row["median_s"].items()}
        row["ratio_vs_xz"] = {k: v / xz for k, v in row["sizes"].items()}
        rows.append(row)

    def group(name: str, sel: list[dict]) -> dict:
        n = sum(r["events"] for r in sel)
        return {
            "file": name,
            "events": n,
            "bytes": sum(r["bytes"] for r in sel),
            "sizes": {k: sum(r["sizes"][k] for r in sel) for k in sel[0]["sizes"]},
            "mev_s": {m: n / sum(r["median_s"][m] for r in sel) / 1e6 for m in methods},
            "max_ratio_vs_xz": {k: max(r["ratio_vs_xz"][k] for r in sel) for k in sel[0]["sizes"]},
            "bits_per_event": {k: 8 * sum(r["sizes"][k] for r in sel) / n for k in sel[0]["sizes"]},
        }

    nm = [r for r in rows if r["format"] == "nmnist"]
    groups = [group(f"N-MNIST, all {len(nm)} files", nm)] if nm else []
    passes: dict[str, dict] = {}
    if len(folder) > 1:
        n_pass = sum(rec["events"] for rec in folder)
        for c in CODECS:
            took = statistics.median(times[("pass", f"pass/{c}")])
            passes[c] = {"files": len(folder), "events": n_pass, "median_s": took,
                         "mev_s": n_pass / took / 1e6}  # fmt: skip
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    commit, tree_note = git_commit()
    meta = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {command}",
        "commit": commit,
        "tree": tree_note or "clean",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "repeats": args.repeats,
        "clock": "process CPU time" if args.cpu_time else "wall clock",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "xz": subprocess.run(["xz", "--version"], capture_output=True, text=True).stdout.split(
            "\n"
        )[0],
        "zstd": subprocess.run(
            ["zstd", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "brotli": getattr(brotli, "__version__", "?"),
    }
    md = render(rows, groups, meta, passes)
    print(md)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(md)
        args.out.with_suffix(".json").write_text(
            json.dumps({"meta": meta, "files": rows, "groups": groups, "pass": passes}, indent=1)
            + "\n"
        )


ORDER = [f"sfev-{c}/{s}" for c in CODECS for s in "cd"]
ORDER.insert(6, "sfev-ctx-py/d")
TOOLS = ["xz/c", "xz/d", "zstd/c", "zstd/d", "brotli/c", "brotli/d"]
ORDER += TOOLS


def render(rows: list[dict], groups: list[dict], meta: dict, passes: dict | None = None) -> str:
    order = [m for m in ORDER if m in rows[0]["mev_s"]]
    lines = [
        "# Event codec: sizes and one-core speeds",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Commit `{meta.get('commit')}` ({meta.get('tree', 'not recorded')}).",
        "",
        f"{meta['when']}, {meta['machine']}, CPUs {meta['cpu_affinity']}, Python "
        f"{meta['python']}, numpy {meta['numpy']}, {meta['xz']}, {meta['zstd']}. "
        f"Load average (1/5/15 min) before {tuple(round(v, 2) for v in meta['load_avg_before'])}"
        f", after {tuple(round(v, 2) for v in meta['load_avg_after'])} (shared 2-core machine).",
        f"Medians over {meta['repeats']} interleaved rounds.",
        "",
        "## Size: bits per event (ratio to `xz -9e` of the original file)",
        "",
        "| file | events | original | sfev ctx3 | sfev rans | sfev ctx | sfev zstd | sfev lzma | "
        "xz -9e | zstd -19 | brotli 11 | EVT 3.0 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = [
        "sfev-ctx3",
        "sfev-rans",
        "sfev-ctx",
        "sfev-zstd",
        "sfev-lzma",
        "xz -9e",
        "zstd -19",
        "brotli 11",
        "EVT 3.0",
    ]
    for r in rows + groups:
        q = r["ratio_vs_xz"] if r in rows else r["max_ratio_vs_xz"]
        name = f"**{r['file']}** (worst file's ratio)" if r in groups else r["file"]
        cells = [
            f"{r['bits_per_event'][k]:.2f}" + ("" if k == "xz -9e" else f" ({q[k]:.3f})")
            for k in keys
        ]
        lines.append(
            f"| {name} | {r['events']} | {8 * r['bytes'] / r['events']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "## Speed (million events per second, one core; c = compress, d = decompress)",
        "",
        "sfev times the codec on events in memory, brotli the library in process; the xz and "
        "zstd tools' times include starting a process. sfev-ctx3 and sfev-rans c and d are "
        "their compiled coders; sfev-ctx d is the compiled block decoder of version 2, "
        "sfev-ctx-py d the Python (constriction) decoder of the same files.",
        "",
        f"Clock: {meta['clock']}.",
        "",
        "| file | " + " | ".join(m.replace("/", " ") for m in order) + " |",
        "|---|" + "---:|" * len(order),
    ]
    for r in rows + groups:
        name = f"**{r['file']}**" if r in groups else r["file"]
        lines.append(f"| {name} | " + " | ".join(f"{r['mev_s'][m]:.2f}" for m in order) + " |")
    if passes:
        first = next(iter(passes.values()))
        lines += [
            "",
            f"## A folder decoded back to back ({first['files']} N-MNIST files, "
            f"{first['events']} events)",
            "",
            "Decompression, million events per second, one core: the folder pass (every file "
            "decoded in turn, as a data loader does) beside the per-file figure above (each "
            "file after unrelated work).",
            "",
            "| codec | folder pass | per file |",
            "|---|---:|---:|",
        ]
        group = groups[0]["mev_s"] if groups else {}
        for c, v in passes.items():
            per_file = group.get(f"sfev-{c}/d")
            shown = "" if per_file is None else f"{per_file:.2f}"
            lines.append(f"| sfev {c} | {v['mev_s']:.2f} | {shown} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
