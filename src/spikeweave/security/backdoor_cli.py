"""``spikeweave backdoor scan`` and ``spikeweave backdoor defend``: MESA on a trained run.

Plain functions; ``spikeweave/cli/__init__.py`` wires them to the command line.

- The **defender's clean data** are the run's validation split when it held one out
  (``val_fraction``; never poisoned), else a seeded ``samples`` subset of the clean training
  split (loaded without the run's poisoning). Metrics use the test split.
- A run trained with backdoor poisoning (``[train_transforms.backdoor]``) knows its trigger
  (any kind: badnets, blended, wanet): ASR (attack success rate) and R-Acc (robust accuracy:
  triggered non-target images still given their true label) are measured with the same
  transform, and for a badnets run the 51 held-out patterns around its patch; for any other
  run, ASR is that of the triggers MESA itself found.
- BackdoorBench's metrics before and after: C-Acc (``clean_accuracy``), ASR (``asr``), R-Acc
  (``robust_accuracy``) and the defense effectiveness rating ``der`` (Zhu et al. 2023, eq. 7:
  ``[max(0, ΔASR) − max(0, ΔC-Acc) + 1] / 2`` with Δ the drop).
- ``defend`` writes ``backdoor_defend.json``, ``triggers_beta<β>.png`` (a grid of sampled
  triggers per β) and a defended copy of the run (``<run>-defended-<defense>``) that
  :func:`~spikeweave.load_run` and ``spikeweave eval`` read like any run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write_bytes, make_folder, refuse_linked_folder
from ..errors import ConfigError, DataError
from ..options import MAX_INT
from .backdoor import (
    Trigger,
    attack_success_rate,
    backdoor_options,
    check_target,
    defense_effectiveness_rating,
    heldout_triggers,
    triggered_metrics,
)
from .mesa import (
    FinetuneOptions,
    MesaOptions,
    detect_target,
    ensemble_sampler,
    finetune,
    fixed_sampler,
    reverse_engineer_trigger,
    sample_triggers,
    train_mesa,
)

__all__ = [
    "DEFENSES",
    "backdoor_metrics",
    "der_of",
    "defend_command",
    "parse_betas",
    "parse_target",
    "plot_trigger_grid",
    "scan_command",
    "tensors_of",
]

DEFENSES = ("mesa", "single", "true", "clean")


def parse_betas(text: str) -> tuple[float, ...]:
    """``"0.9,0.8,0.5"`` as thresholds in (0, 1); one-line ConfigError otherwise."""
    try:
        betas = tuple(float(p) for p in text.replace(",", " ").split())
    except ValueError:
        raise ConfigError(
            f"--betas must be numbers in (0, 1) like 0.9,0.8,0.5, got {text!r}"
        ) from None
    if not betas or any(not 0 < b < 1 for b in betas):
        raise ConfigError(f"--betas must be numbers in (0, 1) like 0.9,0.8,0.5, got {text!r}")
    return betas


def parse_target(text: str, num_classes: int) -> int | None:
    """``auto`` -> None (detect), else a class index in range (one-line ConfigError)."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ConfigError(f"--target must be 'auto' or a class index, got {text!r}") from None
    return check_target(value, num_classes)


def tensors_of(dataset: Any, samples: int | None = None, seed: int = 0):
    """``(x [N, ...], y [N])`` of a map-style dataset (a seeded subset of ``samples``)."""
    n = len(dataset)
    idx = (
        torch.arange(n)
        if samples is None or samples >= n
        else torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:samples]
    )
    xs, ys = zip(*(dataset[int(i)] for i in idx), strict=True)
    return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys, dtype=torch.long)


def backdoor_metrics(
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: int,
    trigger: torch.Tensor | Trigger | None,
    heldout: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, float | None]:
    """Clean accuracy (C-Acc), ASR and robust accuracy (R-Acc) of ``trigger`` (a patch
    ``[C, s, s]``, patches ``[N, C, s, s]`` or a :class:`~.backdoor.Trigger` of any kind; None:
    both None) and mean / worst ASR over ``heldout [M, C, s, s]``."""
    classifier.eval()
    with torch.no_grad():
        correct = sum(
            int((classifier(x[i : i + 500]).argmax(-1) == y[i : i + 500]).sum())
            for i in range(0, len(x), 500)
        )
    out: dict[str, float | None] = {"clean_accuracy": correct / len(x)}
    rates = None if trigger is None else triggered_metrics(classifier, x, y, trigger, target, seed)
    out["asr"] = None if rates is None else rates["asr"]
    out["robust_accuracy"] = None if rates is None else rates["robust_accuracy"]
    if heldout is not None:
        rates = [attack_success_rate(classifier, x, y, t, target, seed) for t in heldout]
        out["heldout_mean_asr"] = sum(rates) / len(rates)
        out["heldout_worst_asr"] = max(rates)
    return out


def der_of(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """The defense effectiveness rating of two :func:`backdoor_metrics` results (None when
    either has no ASR)."""
    if before.get("asr") is None or after.get("asr") is None:
        return None
    return defense_effectiveness_rating(
        before["clean_accuracy"], before["asr"], after["clean_accuracy"], after["asr"]
    )


def plot_trigger_grid(triggers: torch.Tensor, path: Path, title: str, columns: int = 16) -> Path:
    """Draw ``triggers [n, C, s, s]`` (values in [0, 1]) as a grid PNG at ``path``.

    An image grid: the panels have no axes on purpose; the heading gives what one shows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(triggers)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(max(cols * 0.5 + 0.4, 5.0), rows * 0.5 + 0.8))
    FigureCanvasAgg(fig)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        t = triggers[i].detach().cpu()
        img = t[0] if t.shape[0] == 1 else t.permute(1, 2, 0)
        ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
    size = "x".join(str(d) for d in triggers.shape[-2:])
    fig.suptitle(f"{title}\n{n} sampled triggers, {size} pixels each (black = 0, white = 1)",
                 fontsize=8)  # fmt: skip
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write_bytes(path, buf.getvalue())
    return path


class StageProgress:
    """Progress of the searches: a live bar per stage on a terminal, one line per finished
    stage elsewhere (logs never get bar frames). Call it as ``progress(label, step, total)``."""

    def __init__(self, enabled: bool = True, stream: Any = None) -> None:
        import sys

        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._task: Any = None
        self._label = ""

    def __enter__(self) -> StageProgress:
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
            self._bar = Progress(*columns, console=Console(file=self.stream))
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> bool:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False

    def __call__(self, label: str, step: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            if label != self._label:
                self._task = self._bar.add_task(label, total=total)
                self._label = label
            self._bar.update(self._task, completed=step)
        elif step == total:
            done = "done" if total == 1 else f"{total} steps done"
            print(f"{label}: {done}", file=self.stream, flush=True)


def _check_at_least(flag: str, value: int, minimum: int, what: str) -> None:
    """One-line ConfigError for a count outside [minimum, 2**63 - 1] (checked before any
    loading)."""
    if not minimum <= value <= MAX_INT:
        raise ConfigError(f"{flag} ({what}) must be in [{minimum}, 2**63 - 1], got {value}")


def _load(run_dir: str | Path, samples: int, seed: int, device: str = "cpu"):
    """The run (its model on ``device``), its classifier, defender data ``(xd, yd)`` and test
    data (on the same device) and the true trigger (a :class:`~.backdoor.Trigger`, or None for a
    run trained without poisoning)."""
    from .. import data as datasets
    from ..training import load_run
    from ..training.assembly import data_options
    from ..training.evaluation import split_training
    from .attacks import as_classifier

    run = load_run(run_dir, device=device)
    clf = as_classifier(run)  # ConfigError for non-classification runs
    if run.task.spec.temporal or len(run.task.spec.input_shape) != 3:
        raise ConfigError(f"backdoor tools need a run on images (C, H, W); {run.path} is not")
    try:
        train = datasets.load(run.config.dataset, "train", **data_options(run.config, False))
        test = datasets.load(run.config.dataset, "test", **data_options(run.config, False))
    except KeyError as exc:  # pragma: no cover
        raise DataError(str(exc)) from None
    rest, val = split_training(train, run.config, True)
    if val is not None:
        xd, yd = tensors_of(val)
        source = f"the run's validation split ({len(xd)} clean images)"
    else:
        xd, yd = tensors_of(rest, samples, seed)
        source = f"{len(xd)} clean training images (seeded subset; the run held out no validation)"
    xt, yt = tensors_of(test)
    options = backdoor_options(run.config)
    xd, yd, xt, yt = (t.to(run.device) for t in (xd, yd, xt, yt))
    trigger = None
    if options is not None and options.fraction:
        trigger = options.make_attack(run.task.spec.input_shape).to(run.device)
    return run, clf, (xd, yd, source), (xt, yt), trigger


def scan_command(
    run_dir: str | Path,
    *,
    steps: int = 50,
    samples: int = 1000,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Search triggers for every class of the run (``steps`` generator steps each, β = 0.9)
    and write ``backdoor_scan.json``: per-class score, the suspected target, anomaly index."""
    # 0 steps would score the untrained generators' triggers: "100 % success" for every class
    _check_at_least("--steps", steps, 1, "generator steps per class")
    _check_at_least("--samples", samples, 1, "clean images")
    _check_at_least("--seed", seed, 0, "seed of the search")
    run, clf, (xd, yd, source), _, trigger = _load(run_dir, samples, seed, device)
    k = run.task.spec.num_outputs
    with StageProgress(progress) as bar:
        det = detect_target(clf, xd, yd, k, MesaOptions(), steps=steps, seed=seed, progress=bar)
    result = {
        "run": str(run.path),
        "defender_data": source,
        "steps_per_class": steps,
        "seed": seed,
        **det.to_dict(),
        "true_target": backdoor_options(run.config).target if trigger is not None else None,
    }
    out = make_folder(out_dir) if out_dir is not None else refuse_linked_folder(run.path)
    atomic_write_bytes(out / "backdoor_scan.json", json.dumps(result, indent=2).encode())
    return result


def _save_defended(run: Any, model: nn.Module, path: Path, note: dict[str, Any]) -> Path:
    """A copy of ``run``'s directory files with ``model``'s weights in its checkpoint."""
    from ..training.run import read_training_checkpoint, save_run
    from ..training.rundir import RunDir

    tensors, meta = read_training_checkpoint(Path(run.path) / RunDir.CHECKPOINT)
    inner = getattr(model, "model", model)
    defended = replace(run, model=inner)
    history, wall = meta["history"], meta["wall_time_s"]
    save_run(
        path, defended, run.epoch, history, wall, {"defense.json": note}, carry=(tensors, meta)
    )
    return path


def defend_command(
    run_dir: str | Path,
    target: str = "auto",
    *,
    defense: str = "mesa",
    betas: Sequence[float] = (0.9, 0.8, 0.5),
    alpha: float = 0.1,
    mesa_steps: int = 0,
    scan_steps: int = 50,
    finetune_options: FinetuneOptions | None = None,
    samples: int = 1000,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Find (``target="auto"``) or take the target class, model its triggers (MESA, one
    generator per β) or build the baseline's trigger, fine-tune, and write the results.

    Args:
        defense: ``mesa`` (the ensemble), ``single`` (one reverse-engineered trigger),
            ``true`` (the run's own trigger; poisoned runs only) or ``clean`` (no triggers).
        mesa_steps: generator steps per β (0: MESA's 10 epochs over the defender's data).
        finetune_options: the fine-tuning settings (default :class:`FinetuneOptions`).
        progress: report the searches' steps (a bar on a terminal, lines elsewhere).
        device: where the run's model, the data, generators and fine-tuning compute
            (``auto``, ``cpu``, ``cuda``, ``cuda:N``); random draws come from seeded CPU
            generators, so the triggers and batches are the same on every device.
    """
    if defense not in DEFENSES:
        raise ConfigError(f"unknown defense {defense!r}; choose one of {', '.join(DEFENSES)}")
    _check_at_least("--mesa-steps", mesa_steps, 0, "generator steps per β; 0: 10 epochs")
    _check_at_least("--scan-steps", scan_steps, 1, "search steps per class")
    _check_at_least("--samples", samples, 1, "clean images")
    _check_at_least("--seed", seed, 0, "seed of the search and the fine-tuning")
    ft = finetune_options or FinetuneOptions()
    _check_at_least("--finetune-epochs", ft.epochs, 1, "fine-tuning epochs")
    if not math.isfinite(ft.lr):
        raise ConfigError(f"--finetune-lr must be a finite number > 0, got {ft.lr}")
    options = MesaOptions(betas=tuple(betas), alpha=alpha, steps=mesa_steps)
    run, clf, (xd, yd, source), (xt, yt), trigger = _load(run_dir, samples, seed, device)
    k = run.task.spec.num_outputs
    chosen = parse_target(target, k)
    if defense == "true" and trigger is None:
        raise ConfigError("--defense true needs a run trained with --poison-fraction (its trigger)")
    if defense == "true" and trigger.kind != "badnets":
        raise ConfigError(f"--defense true fine-tunes with the run's patch; this run's trigger is "
                          f"{trigger.kind}, not a badnets patch")  # fmt: skip
    result: dict[str, Any] = {"run": str(run.path), "defense": defense, "defender_data": source}
    with StageProgress(progress) as bar:
        return _defend(run, clf, xd, yd, xt, yt, trigger, chosen, defense, options, ft,
                       scan_steps, seed, out_dir, result, bar)  # fmt: skip


def _defend(run, clf, xd, yd, xt, yt, trigger, chosen, defense, options, ft, scan_steps, seed,
            out_dir, result, bar) -> dict[str, Any]:  # fmt: skip
    """The body of :func:`defend_command` once the inputs are checked and loaded."""
    k = run.task.spec.num_outputs
    if chosen is None:
        det = detect_target(clf, xd, yd, k, options, steps=scan_steps, seed=seed, progress=bar)
        chosen = det.target
        result["scan"] = det.to_dict()
    result["target"] = chosen
    out = make_folder(out_dir) if out_dir is not None else refuse_linked_folder(run.path)
    gen = torch.Generator().manual_seed(seed)
    sampler, found = None, None
    if defense == "mesa":
        gens = train_mesa(clf, xd, yd, chosen, options, seed, progress=bar)
        sampler = ensemble_sampler(list(gens.values()))
        found = sample_triggers(list(gens.values()), 256, gen)
        for beta, g in gens.items():
            plot_trigger_grid(g.sample(64, gen), out / f"triggers_beta{beta:g}.png",
                              f"MESA triggers, β = {beta:g}, class {chosen}")  # fmt: skip
    elif defense == "single":
        single = reverse_engineer_trigger(clf, xd, yd, chosen, options.trigger_size, seed=seed)
        sampler, found = fixed_sampler(single), single
    elif defense == "true":
        sampler = fixed_sampler(trigger.patch)
    measured = trigger if trigger is not None else found
    # the 51 held-out patterns are flips of a badnets patch; other kinds have none
    patch = trigger is not None and trigger.kind == "badnets"
    held = heldout_triggers(trigger.patch) if patch else None
    result["before"] = backdoor_metrics(clf, xt, yt, chosen, measured, held, seed)
    bar("fine-tuning", 0, 1)
    defended = finetune(clf, xd, yd, sampler, ft, seed)
    bar("fine-tuning", 1, 1)
    result["after"] = backdoor_metrics(defended, xt, yt, chosen, measured, held, seed)
    result["der"] = der_of(result["before"], result["after"])
    result["trigger_kind"] = trigger.kind if trigger is not None else None
    result["asr_measured_with"] = "the run's trigger" if trigger is not None else "found triggers"
    result["settings"] = {"mesa": {**vars(options)}, "finetune": {**vars(ft)}, "seed": seed}
    name = f"{Path(run.path).name}-defended-{defense}"
    where = Path(out_dir) if out_dir is not None else Path(run.path).parent
    result["defended_run"] = str(_save_defended(run, defended, where / name, result))
    atomic_write_bytes(
        out / "backdoor_defend.json", json.dumps(result, indent=2, default=str).encode()
    )
    return result
