"""Sampled-mode report: what `spikeweave compress --rate R` keeps, per sampler, on real recordings.

For rates 5, 10 and 25 % of pixels per 10 ms window and three samplers (the built-in trained
``spiking`` sampler, and the baselines ``random`` and ``activity``), on the real recordings in
../shared/data/real (11 N-MNIST samples, the AEDAT4 sample) and on held-out simulated N-MNIST-like
recordings, it measures:

- **event-frame reconstruction**: the 10 ms event frames (counts per polarity, clipped at 2,
  scaled to [0, 1]) rebuilt from the kept events, i.e. what ``spikeweave decompress`` returns,
  against those of the full recording: PSNR (from the MSE pooled over all windows of a set)
  and SSIM (torchmetrics, mean over windows); plus the share of events kept and the size of
  the sampled ``.sfev`` against the lossless one;
- **classification**: an N-MNIST classifier's accuracy on sampled vs full events, and how often
  its prediction on the sampled recording equals that on the full one (agreement), with Wilson
  95 % intervals.

There is no N-MNIST training set on this machine, so the classifier is a substitute, trained
here: spikeweave's ``convnet`` (LIF, BPTT, T = 10 frames per recording, as the ``nmnist``
dataset bins them) on *simulated* saccade events of mnist5k training images
(``spikeweave.compression.saccades``); it is tested on simulated events of the mnist5k test
images and on the 11 real labelled N-MNIST samples. Neither the classifier nor the samplers
ever saw a real recording.

Run (one torch thread; writes OUT.md, OUT.json, OUT.png and the classifier's run directory
under OUT_runs/):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_event_sampling.py \
        --out benchmarks/results/compression.event_sampling
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from spikeweave.atomic import atomic_write_bytes
from spikeweave.compression import encode_events, load_events
from spikeweave.compression.event_sampler import FRAME_CAP, EventFrameSampler, topk_by_score
from spikeweave.compression.saccades import SENSOR_SIZE, simulate_saccades
from spikeweave.compression.sampling import (
    DEFAULT_WINDOW_US,
    activity_mask,
    random_mask,
    sample_events,
    window_frames,
)
from spikeweave.data.binning import to_frames
from spikeweave.experiments.stats import accuracy_interval, mcnemar

REAL = Path(
    os.environ.get(
        "SPIKEWEAVE_REAL_DATA", Path(__file__).resolve().parents[1] / ".." / "shared/data/real"
    )
)
RATES = (0.05, 0.10, 0.25)
ARMS = ("spiking", "random", "activity")
T_FRAMES = 10  # frames per recording for the classifier, the nmnist dataset's default
TONIC_LABEL = 4  # tonic stores no label; SOURCES.md: its first-saccade image "looks like a 4"


def real_nmnist() -> list[tuple[Path, int, str]]:
    """``(path, label, label source)`` of the 11 real N-MNIST samples."""
    folder = REAL / "nmnist" / "slayerPytorch_NMNISTsmall"
    with (folder / "labels.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("file")]
    out = [(folder / r["file"], int(r["class"]), "labels.csv") for r in rows]
    out.append(
        (REAL / "nmnist" / "tonic" / "sample_nmnist.bin", TONIC_LABEL, "visual (SOURCES.md)")
    )
    return out


def norm(frames: np.ndarray) -> torch.Tensor:
    """Count frames -> float [n, 2, H, W] in [0, 1], clipped at FRAME_CAP (as the sampler sees)."""
    return torch.from_numpy(np.minimum(frames, FRAME_CAP).astype(np.float32) / FRAME_CAP)


def recon_stats(full: np.ndarray, kept: np.ndarray) -> tuple[float, float, int]:
    """``(sum of squared errors, sum of SSIM over windows, values)`` of kept vs full frames."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = norm(kept), norm(full)
    sse = float(((a - b) ** 2).sum())
    ssim = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
    return sse, float(ssim.sum()), a.numel()


class CachedSampler:
    """A built-in sampler whose scores are computed once per recording for all rates (the
    same weights serve every rate); ``info`` as the sampler's."""

    def __init__(self, sampler: EventFrameSampler) -> None:
        self.sampler, self.info = sampler, sampler.info
        self._key: tuple | None = None
        self._scores: np.ndarray | None = None

    def __call__(self, frames: np.ndarray, k: int) -> np.ndarray:
        key = (id(frames), frames.shape)
        if key != self._key:
            self._key, self._scores = key, self.sampler.scores(frames)
        return topk_by_score(self._scores, k)


def mask_fns(seed: int) -> dict[tuple[str, float], object]:
    """The mask function of every (arm, rate); the spiking ones are the built-in samplers."""
    fns: dict[tuple[str, float], object] = {}
    loaded: dict[str, CachedSampler] = {}
    for rate in RATES:
        s = EventFrameSampler.builtin(rate)
        fns["spiking", rate] = loaded.setdefault(s.info["sampler_sha256"], CachedSampler(s))
        fns["random", rate] = lambda f, k, s=seed: random_mask(f, k, s)
        fns["activity", rate] = activity_mask
    return fns


def evaluate_recording(ev: np.ndarray, sensor: tuple[int, int], fns: dict, window_us: int) -> dict:
    """Kept events and reconstruction numbers of one recording for every (arm, rate)."""
    frames, cell = window_frames(ev, sensor, window_us)
    k_of = {r: int(round(r * sensor[0] * sensor[1])) for r in RATES}
    out: dict = {"n": int(ev.size), "lossless_bytes": len(encode_events(ev, sensor))}
    for (arm, rate), fn in fns.items():
        mask = fn(frames, k_of[rate])
        kept = ev[mask.reshape(-1)[cell]]
        kept_frames = frames * mask[:, None]
        assert int(kept_frames.sum()) == kept.size  # the frames of exactly the kept events
        sse, ssim_sum, values = recon_stats(frames, kept_frames)
        out[arm, rate] = {
            "kept": kept,
            "achieved_rate": float(mask.mean()),
            "sse": sse,
            "ssim_sum": ssim_sum,
            "values": values,
            "windows": int(frames.shape[0]),
            "bytes": len(encode_events(kept, sensor)),
        }
    return out


def bin_frames(ev: np.ndarray) -> np.ndarray:
    """[T, 2, 34, 34] float32 count frames over the recording's own span (nmnist binning)."""
    if ev.size == 0:
        return np.zeros((T_FRAMES, 2, 34, 34), dtype=np.float32)
    return to_frames(ev, SENSOR_SIZE, n_frames=T_FRAMES)


def classifier(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, args, runs):
    """The substitute N-MNIST classifier: spikeweave convnet trained on simulated recordings
    ``x`` [N, T, 2, 34, 34] (labels ``y``; ``xt``, ``yt`` its held-out test), or the run already
    trained in ``runs`` by an earlier call with the same settings. Returns the loaded run."""
    from spikeweave.training import TrainConfig, Trainer, load_run

    run_dir = runs / "nmnist-sim-classifier"
    if not (run_dir / "summary.json").is_file():
        cfg = TrainConfig(
            dataset="nmnist",
            model="convnet",
            steps=T_FRAMES,
            epochs=args.epochs,
            batch_size=64,
            lr=2e-3,
            seed=args.seed,
            out_dir=str(runs),
            notes={
                "data": f"simulated saccade events of {len(x)} mnist5k train images "
                "(spikeweave.compression.saccades)"
            },
        )
        data = (
            TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
            TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt)),
        )
        Trainer(cfg, datasets=data, run_dir=run_dir, progress=True).fit()
    return load_run(run_dir)


def predict(run, frames: np.ndarray) -> np.ndarray:
    """Class predictions for recordings [N, T, 2, 34, 34]."""
    return np.concatenate(
        [
            run.predict(torch.from_numpy(frames[i : i + 250])).numpy()
            for i in range(0, len(frames), 250)
        ]
    )


def pm(lo_hi: tuple[float, float]) -> str:
    return f"[{100 * lo_hi[0]:.0f}, {100 * lo_hi[1]:.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="write OUT.md/.json/.png")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window-us", type=int, default=DEFAULT_WINDOW_US)
    args = parser.parse_args()
    from rich.progress import Progress, track

    from spikeweave.data.embedded import load_mnist5k_arrays
    from spikeweave.training import versions

    start = time.time()
    torch.manual_seed(args.seed)
    runs = args.out.parent / f"{args.out.name}_runs"

    # -- the substitute classifier, on simulated events ---------------------------------------
    x_tr, y_tr = load_mnist5k_arrays("train")
    x_te, y_te = load_mnist5k_arrays("test")
    pick_tr = np.random.default_rng(args.seed + 100).permutation(len(x_tr))[: args.train_images]
    pick_te = np.random.default_rng(args.seed + 101).permutation(len(x_te))[: args.test_images]
    # simulation seeds differ from the samplers' (pretrain uses seed 0 and 1)
    with Progress(transient=True) as bar:
        task = bar.add_task("simulating saccades", total=len(pick_tr) + len(pick_te))
        tick = lambda n: bar.advance(task, n)  # noqa: E731
        sim_tr = simulate_saccades(x_tr[pick_tr], args.seed + 10, progress=tick)
        sim_te = simulate_saccades(x_te[pick_te], args.seed + 11, progress=tick)
    xtr = np.stack([bin_frames(e) for e in sim_tr])
    xte = np.stack([bin_frames(e) for e in sim_te])
    trainer = classifier(xtr, y_tr[pick_tr], xte, y_te[pick_te], args, runs)
    del xtr
    fns = mask_fns(args.seed)

    # -- every recording, every (arm, rate) ---------------------------------------------------
    sets: dict[str, list[tuple[str, np.ndarray, tuple[int, int], int | None]]] = {
        "real N-MNIST (11)": [(p.name, *load_events(p)[:2], lab) for p, lab, _ in real_nmnist()],
        "AEDAT4 DVXplorer": [
            ("tonic_sample.aedat4", *load_events(REAL / "aedat4" / "tonic_sample.aedat4")[:2], None)
        ],
        f"simulated N-MNIST test ({args.test_images})": [
            (f"sim{i}", e, SENSOR_SIZE, int(y_te[j]))
            for i, (e, j) in enumerate(zip(sim_te, pick_te, strict=True))
        ],
    }
    # sampled mode as compress runs it gives the same kept events as this script's loop
    name0, ev0, sensor0, _ = sets["real N-MNIST (11)"][0]
    results: dict = {}
    per_file: list[dict] = []
    for set_name, recs in sets.items():
        agg: dict = {}
        preds: dict = {"full": [], **{f"{a} {r}": [] for a in ARMS for r in RATES}}
        labels = []
        for name, ev, sensor, label in track(recs, description=set_name):
            r = evaluate_recording(ev, sensor, fns, args.window_us)
            if name == name0:
                for (arm, rate), fn in fns.items():
                    kept, _ = sample_events(ev, sensor, rate, sampler=arm, mask_fn=fn)
                    np.testing.assert_array_equal(kept, r[arm, rate]["kept"])
            for key in fns:
                a = agg.setdefault(
                    key,
                    {
                        "sse": 0.0,
                        "ssim": 0.0,
                        "values": 0,
                        "windows": 0,
                        "kept": 0,
                        "events": 0,
                        "bytes": 0,
                        "lossless": 0,
                        "achieved": [],
                    },
                )
                v = r[key]
                a["sse"] += v["sse"]
                a["ssim"] += v["ssim_sum"]
                a["values"] += v["values"]
                a["windows"] += v["windows"]
                a["kept"] += v["kept"].size
                a["events"] += r["n"]
                a["bytes"] += v["bytes"]
                a["lossless"] += r["lossless_bytes"]
                a["achieved"].append(v["achieved_rate"])
            if label is not None:
                labels.append(label)
                batch = [bin_frames(ev)] + [
                    bin_frames(r[a, q]["kept"]) for a in ARMS for q in RATES
                ]
                p = predict(trainer, np.stack(batch))
                preds["full"].append(int(p[0]))
                for i, (a, q) in enumerate((a, q) for a in ARMS for q in RATES):
                    preds[f"{a} {q}"].append(int(p[1 + i]))
                if set_name.startswith("real"):
                    per_file.append(
                        {
                            "file": name,
                            "label": label,
                            "full": int(p[0]),
                            **{
                                f"{a} {round(100 * q)}%": int(p[1 + i])
                                for i, (a, q) in enumerate((a, q) for a in ARMS for q in RATES)
                            },
                        }
                    )
        recon = {}
        for (arm, rate), a in agg.items():
            mse = a["sse"] / a["values"]
            recon[f"{arm} {rate}"] = {
                "psnr_db": float("inf") if mse == 0 else float(10 * np.log10(1 / mse)),
                "ssim": a["ssim"] / a["windows"],
                "event_fraction": a["kept"] / a["events"],
                "bytes_vs_lossless": a["bytes"] / a["lossless"],
                "achieved_rate_min": min(a["achieved"]),
                "achieved_rate_max": max(a["achieved"]),
            }
        cls = None
        if labels:
            y = np.array(labels)
            full = np.array(preds["full"])
            cls = {"n": len(y), "full": {"correct": int((full == y).sum())}}
            for key, p in preds.items():
                p = np.array(p)
                correct = int((p == y).sum())
                agree = int((p == full).sum())
                entry = {
                    "correct": correct,
                    "accuracy": correct / len(y),
                    "accuracy_ci": accuracy_interval(correct, len(y)),
                    "agreement": agree / len(y),
                    "agreement_ci": accuracy_interval(agree, len(y)),
                }
                if key != "full":
                    only_full, only_sampled, pval = mcnemar(full == y, p == y)
                    entry["mcnemar"] = {
                        "full_only": only_full,
                        "sampled_only": only_sampled,
                        "p": pval,
                    }
                cls[key] = entry
        results[set_name] = {"reconstruction": recon, "classification": cls}

    write_report(args, results, per_file, fns, trainer, sets, start, versions())


def write_report(args, results, per_file, fns, trainer, sets, start, vers) -> None:
    """OUT.json, OUT.md and OUT.png."""
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_event_sampling.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    samplers = {f"spiking {r}": fns["spiking", r].info for r in RATES}
    summary = json.loads((trainer.path / "summary.json").read_text())
    doc = {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - start, 1),
        "seeds": {
            "classifier": args.seed,
            "random_baseline": args.seed,
            "sim_train": args.seed + 10,
            "sim_test": args.seed + 11,
        },
        "window_us": args.window_us,
        "frame_cap": FRAME_CAP,
        "samplers": samplers,
        "classifier": {
            "run_dir": str(trainer.path),
            "train_images": args.train_images,
            "epochs": args.epochs,
            "summary": summary,
        },
        "results": results,
        "real_per_file": per_file,
        "versions": vers,
        "machine": platform.platform(),
    }
    out = args.out
    atomic_write_bytes(
        out.parent / f"{out.name}.json", json.dumps(doc, indent=1, default=str).encode()
    )
    figure(sets, fns, args.window_us, out.parent / f"{out.name}.png")

    L = [
        "# Sampled mode: spiking sampler vs random and activity baselines (event frames)",
        "",
        f"Command ({doc['wall_s'] / 60:.1f} min on the shared 2-core machine, one torch thread):",
        f"`{command}`",
        "",
        "Sampled mode keeps, per 10 ms window, the events at `round(rate·H·W)` pixels chosen by "
        "the sampler. `spiking` = the built-in trained spiking sampler (the default of "
        "`spikeweave compress --rate R`), trained on simulated event frames only; `random` and "
        "`activity` (the busiest pixels) are baselines. Weights used:",
        "",
    ]
    for k, v in samplers.items():
        L.append(
            f"- {k}: `{v['sampler_source']}`, weights sha256 `{v['sampler_sha256']}`, "
            f"trained at rate {v['sampler_trained_rate']}"
        )
    L += [
        "",
        "## Event-frame reconstruction from the kept events",
        "",
        "Frames: counts per polarity per 10 ms window, clipped at 2, scaled to [0, 1]; kept = "
        "exactly the events `spikeweave decompress` returns (no decoder fills the dropped "
        "pixels). PSNR from the MSE pooled over every window of the set; SSIM mean over "
        "windows; events kept and `.sfev` size relative to the full recording / the lossless "
        "`.sfev`.",
        "",
    ]
    for set_name, res in results.items():
        L += [
            f"### {set_name}",
            "",
            "| rate | sampler | PSNR (dB) | SSIM | events kept | size vs lossless |",
            "|---|---|---|---|---|---|",
        ]
        for rate in RATES:
            for arm in ARMS:
                v = res["reconstruction"][f"{arm} {rate}"]
                L.append(
                    f"| {round(100 * rate)} % | {arm} | {v['psnr_db']:.2f} | "
                    f"{v['ssim']:.3f} | {100 * v['event_fraction']:.1f} % | "
                    f"{v['bytes_vs_lossless']:.3f} |"
                )
        L.append("")
    L += [
        "## N-MNIST classifier on sampled vs full events",
        "",
        "The classifier is a substitute (no N-MNIST training set here): spikeweave `convnet` "
        f"(LIF, BPTT, T = {T_FRAMES} frames) trained for {args.epochs} epochs on simulated "
        f"saccade events of {args.train_images} mnist5k training images. Accuracy and "
        "agreement (prediction on the sampled recording = prediction on the full one) with "
        "Wilson 95 % intervals; McNemar's exact p compares sampled against full correctness "
        "on the same recordings.",
        "",
    ]
    for set_name, res in results.items():
        c = res["classification"]
        if not c:
            continue
        n = c["n"]
        f = c["full"]
        L += [
            f"### {set_name}: n = {n}",
            "",
            f"Full events: accuracy {100 * f['accuracy']:.1f} % {pm(f['accuracy_ci'])}.",
            "",
            "| rate | sampler | accuracy % [95 % CI] | agreement with full % [95 % CI] | "
            "McNemar p |",
            "|---|---|---|---|---|",
        ]
        for rate in RATES:
            for arm in ARMS:
                v = c[f"{arm} {rate}"]
                L.append(
                    f"| {round(100 * rate)} % | {arm} | {100 * v['accuracy']:.1f} "
                    f"{pm(v['accuracy_ci'])} | {100 * v['agreement']:.1f} "
                    f"{pm(v['agreement_ci'])} | {v['mcnemar']['p']:.3g} |"
                )
        L.append("")
    cols = list(per_file[0]) if per_file else []
    L += [
        "### Real recordings, per file (predicted class)",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    L += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in per_file]
    L += [
        "",
        "## Caveats",
        "",
        "- Small n: 11 real recordings (one per digit, plus tonic's sample, whose label 4 is "
        "from visual inspection, SOURCES.md); the intervals are wide and a difference of one "
        "or two recordings is not evidence.",
        "- The classifier and the spiking samplers were trained on simulated events "
        "(spikeweave.compression.saccades: a simple DVS pixel model of three saccades); the "
        "real recordings differ (sensor noise, timing, digit size), so real-data accuracy "
        "measures the transfer from simulation as much as the sampling.",
        "- The AEDAT4 sample (320×240 DVXplorer, not digits) is reconstruction-only; the "
        "spiking sampler was trained on 34×34 frames and runs convolutionally there.",
        "- Reconstruction counts only what is stored: the dropped pixels are empty. A decoder "
        "(as in the image experiment) could fill them, but would need the mask, which "
        "sampled `.sfev` files do not store.",
        "",
        f"![examples]({out.name}.png)",
        "",
    ]
    atomic_write_bytes(out.parent / f"{out.name}.md", "\n".join(L).encode())
    print(f"wrote {out}.md/.json/.png")


def figure(sets, fns, window_us: int, path: Path) -> None:
    """Full and kept frames (ON red, OFF blue) of the four busiest windows of real 1.bs2 at
    10 %: an image grid (no axis ticks on purpose; rows and columns are named)."""
    from matplotlib.figure import Figure

    name, ev, sensor, _ = sets["real N-MNIST (11)"][0]
    frames, _ = window_frames(ev, sensor, window_us)
    wins = [int(w) for w in np.argsort(-frames.sum((1, 2, 3)))[:4]]
    rows = [("full", None)] + [(arm, 0.10) for arm in ARMS]
    fig = Figure(figsize=(1.5 * len(wins) + 1.2, 1.5 * len(rows) + 0.5))
    axes = fig.subplots(len(rows), len(wins), squeeze=False)
    k = int(round(0.10 * sensor[0] * sensor[1]))
    masks = {arm: fns[arm, 0.10](frames, k) for arm in ARMS}
    for i, (arm, _) in enumerate(rows):
        for j, w in enumerate(wins):
            f = frames[w] if arm == "full" else frames[w] * masks[arm][w]
            rgb = np.zeros((*f.shape[1:], 3))
            rgb[..., 0] = np.minimum(f[1], FRAME_CAP) / FRAME_CAP
            rgb[..., 2] = np.minimum(f[0], FRAME_CAP) / FRAME_CAP
            if arm != "full":
                rgb[..., 1] = 0.25 * masks[arm][w]  # sampled pixels shown faint green
            ax = axes[i, j]
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(arm if arm == "full" else f"{arm}\n10 %", fontsize=8)
            if i == 0:
                ax.set_title(f"window {w}", fontsize=8)
    fig.suptitle(
        f"{name}: {window_us / 1000:g} ms event frames (ON red, OFF blue; sampled pixels green)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
