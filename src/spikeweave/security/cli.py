"""``spikeweave attack``: robust accuracy of a trained run against one attack over several ε.

Plain functions; ``spikeweave/cli/__init__.py`` wires them to the command line. ``attack_command``
writes ``attack.json`` (robust accuracy per ε) and ``attack.png`` (accuracy vs ε) into the run
directory (or ``out_dir``). ``attack.json`` keeps every attack run there: its top-level keys
describe the latest attack (as a single-record file always did) and ``records`` holds one entry
per attack setting and ε, merged with the earlier ones (a rerun replaces its own entries).
With ``robustbench`` it also writes one RobustBench-style record per ε
(:mod:`~spikeweave.security.robustbench`), ``robustbench-<norm>-<ε>.json``.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_bytes, make_folder, refuse_linked_folder
from ..errors import ConfigError, DataError
from ..options import MAX_INT
from . import reference as reference_library
from .attacks import ATTACKS, NORMS, _check_eps, as_classifier, robust_mask

__all__ = [
    "attack_command",
    "attack_records",
    "evaluation_subset",
    "parse_eps",
    "plot_accuracy_vs_eps",
]

# The inputs every run sees are pixels in [0, 1] (the attacks' default bounds).
_INPUT_RANGE = (0.0, 1.0)
# attack.json holds numbers for a handful of attacks; anything far larger is not ours
_MAX_RECORDS_BYTES = 4 << 20
# the settings that name an attack record (with its ε); accuracies, time and device do not
_SETTING_KEYS = ("attack", "norm", "steps", "step_size", "queries", "eot", "source", "split",
                 "samples", "seed")  # fmt: skip


def parse_eps(text: str) -> list[float]:
    """``"0,0.05,0.1"`` (commas or spaces) as a list of budgets; one-line ConfigError."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--eps must be numbers separated by commas (e.g. 0,0.05,0.1), got {text!r}"
        ) from None
    if not values:
        raise ConfigError("give at least one --eps value")
    return [_check_eps(v) for v in values]


def _check_eps_range(eps: Sequence[float], norm: str, dims: int | None = None) -> None:
    """One-line ConfigError for a budget larger than the input range allows: above 1 an L∞
    budget changes nothing ([0, 1] pixels), nor an L2 one above the range's diameter √dims."""
    lo, hi = _INPUT_RANGE
    if norm == "linf":
        top, what = hi - lo, "the run's input range [0, 1]"
    elif dims is not None:
        top, what = (hi - lo) * dims**0.5, f"the L2 diameter √{dims} of the [0, 1] input range"
    else:
        return
    for e in eps:
        if e > top:
            raise ConfigError(
                f"--eps {e:g} is outside [0, {top:g}], {what}: a larger budget changes nothing"
            )


def attack_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of the ``attack.json`` at ``path`` (none if it is absent): one dict per
    attack setting and ε (the setting keys, ``eps``, ``robust_accuracy``, ``clean_accuracy``);
    a single-record file of an older version is read as its records. One-line DataError for a
    link, an oversized or a malformed file."""
    path = Path(path)
    if path.is_symlink():
        raise DataError(f"{path} is a link; attack results are not read through links")
    if not path.exists():
        return []
    try:
        if path.stat().st_size > _MAX_RECORDS_BYTES:
            raise DataError(f"{path} is larger than {_MAX_RECORDS_BYTES} bytes; not attack results")
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    bad = DataError(f"{path} is not an attack.json written by spikeweave; move it away")
    if not isinstance(value, dict):
        raise bad
    if "records" in value:
        records = value["records"]
        if not isinstance(records, list) or not all(
            isinstance(r, dict) and _is_number(r.get("eps")) for r in records
        ):
            raise bad
        return records
    # an older single-record file: one attack, with parallel eps / robust_accuracy lists
    eps, acc = value.get("eps"), value.get("robust_accuracy")
    if not (isinstance(eps, list) and isinstance(acc, list) and len(eps) == len(acc)):
        raise bad
    if not all(_is_number(v) for v in eps + acc):
        raise bad
    setting = {k: value.get(k) for k in _SETTING_KEYS}
    clean = value.get("clean_accuracy")
    return [
        {**setting, "eps": e, "robust_accuracy": a, "clean_accuracy": clean}
        for e, a in zip(eps, acc, strict=True)
    ]


def _ensemble_masks(
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    clean_mask: torch.Tensor,
    *,
    norm: str,
    num_classes: int,
    **options: Any,
) -> tuple[list[torch.Tensor], list[dict[str, float]]]:
    """Per ε, the images that survive every attack of the reference ensemble (ε = 0: the
    clean ones) and the robust accuracy after each attack (cumulative, in run order). Square
    is L∞ only, so an L2 ensemble runs without it."""
    from .reference import ENSEMBLE, ensemble

    attacks = ENSEMBLE if norm == "linf" else tuple(a for a in ENSEMBLE if a != "square")
    masks, per_attack = [], []
    for e in eps:
        if e == 0:
            masks.append(clean_mask.clone())
            per_attack.append({a: _share(clean_mask) for a in attacks})
            continue
        res = ensemble(target, x, y, e, norm=norm, attacks=attacks, num_classes=num_classes,
                       **options)  # fmt: skip
        masks.append(res.robust & clean_mask)
        per_attack.append({a: v for a, v in res.accuracies().items() if a in attacks})
    return masks, per_attack


def _share(mask: torch.Tensor) -> float:
    """The share of True in a bool mask ``[n]`` (0 for no images)."""
    return int(mask.sum()) / max(len(mask), 1)


def _write_robustbench(out: Path, run: Any, result: dict[str, Any], clean_mask, masks) -> list:
    """One RobustBench-style record per ε of ``result`` into ``out``; returns their paths."""
    from .robustbench import robustbench_record, write_record

    extra = {k: result[k] for k in ("steps", "step_size", "queries", "eot", "source", "split")
             if result[k] is not None}  # fmt: skip
    ensemble = result.get("ensemble")
    paths = []
    for i, (e, mask, acc) in enumerate(zip(result["eps"], masks, result["robust_accuracy"],
                                           strict=True)):  # fmt: skip
        record = robustbench_record(
            name=Path(run.path).name, dataset=run.config.dataset, norm=result["norm"], eps=e,
            clean_accuracy=result["clean_accuracy"],
            robust_accuracy=ensemble[i] if ensemble else {result["attack"]: acc},
            worst_case=_share(clean_mask & mask), n_examples=result["samples"],
            seeds=[result["seed"]], extra=extra, autoattack=bool(ensemble),
        )  # fmt: skip
        path = out / f"robustbench-{result['norm']}-{e:g}.json"
        paths.append(str(write_record(path, record)))
    return paths


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` and ``new`` records, one per setting and ε; a new one replaces an old one."""

    def key(r: dict[str, Any]) -> tuple:
        return (*(json.dumps(r.get(k)) for k in _SETTING_KEYS), float(r["eps"]))

    merged = {key(r): r for r in old}
    merged.update({key(r): r for r in new})
    return list(merged.values())


def _curves(records: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Accuracy-vs-ε curves, one per attack setting, labelled by attack, norm and steps."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(json.dumps(r.get(k)) for k in _SETTING_KEYS), []).append(r)
    curves = {}
    for rows in groups.values():
        r = rows[0]
        label = f"{r.get('attack')} ({r.get('norm')})"
        if r.get("steps") is not None:
            label += f", {r['steps']} steps"
        if r.get("source") is not None:
            label += f", from {Path(str(r['source'])).name}"
        while label in curves:  # settings differing elsewhere (samples, seed) stay apart
            label += "'"
        rows = sorted(rows, key=lambda row: row["eps"])
        curves[label] = ([row["eps"] for row in rows], [row["robust_accuracy"] for row in rows])
    return curves


def evaluation_subset(
    dataset: Any, samples: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` items of ``dataset`` drawn without replacement with ``seed``: ``(x, y)``."""
    n = len(dataset)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(samples, n)]
    xs, ys = zip(*(dataset[int(i)] for i in idx), strict=True)
    return torch.stack(xs), torch.as_tensor(ys, dtype=torch.long)


def plot_accuracy_vs_eps(
    curves: dict[str, tuple[list[float], list[float]]], path: Path, title: str
):
    """Draw ``{label: (eps list, accuracy list in [0, 1])}`` as accuracy (%) vs ε to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..plots import _layer_color, _series_marker

    fig = Figure(figsize=(5.5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (label, (eps, acc)) in enumerate(curves.items()):
        ax.plot(eps, [100 * a for a in acc], marker=_series_marker(i), color=_layer_color(i),
                label=label)  # fmt: skip
    ax.set_xlabel("perturbation budget ε (input units, [0, 1] pixels)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()  # rendered to bytes and written atomically, never through a link
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


# Which attacks read each option the command line offers; any other attack would ignore it.
_PGD_LIKE = ("pgd", "adaptive", "adaptive-surrogate", "transfer")
AUTOATTACK = "autoattack"
"""The attack name of the reference ensemble (:func:`~.reference.ensemble`, from ART)."""
_READ_BY = {
    "steps": (*_PGD_LIKE, AUTOATTACK),
    "norm": (*_PGD_LIKE, "square", AUTOATTACK),
    "source": ("transfer",),
    "queries": ("square", AUTOATTACK),
}


def _check_count(flag: str, value: int, what: str) -> None:
    """One-line ConfigError for a count outside [1, 2**63 - 1]."""
    if not 1 <= value <= MAX_INT:
        raise ConfigError(f"{flag} ({what}) must be in [1, 2**63 - 1], got {value}")


def _refuse_unread(attack: str, **given: Any) -> None:
    """One-line ConfigError for an option given (not None) to an attack that ignores it."""
    for name, value in given.items():
        if value is not None and attack not in _READ_BY[name]:
            users = ", ".join(_READ_BY[name])
            raise ConfigError(
                f"--{name} does not apply to the {attack} attack (only to {users}); leave it out"
            )


def attack_command(
    run_dir: str | Path,
    attack: str,
    eps: Sequence[float],
    steps: int | None = None,
    norm: str | None = None,
    *,
    step_size: float | None = None,
    samples: int = 1000,
    batch_size: int = 250,
    queries: int | None = None,
    eot: int = 1,
    source: str | Path | None = None,
    split: str = "test",
    seed: int = 0,
    out_dir: str | Path | None = None,
    device: str = "cpu",
    robustbench: bool = False,
) -> dict[str, Any]:
    """Attack the run in ``run_dir`` with ``attack`` at every ``eps``; write the results.

    Args:
        run_dir: a directory written by ``spikeweave train``.
        attack: ``fgsm``, ``pgd``, ``adaptive``, ``adaptive-surrogate``, ``transfer``,
            ``square``, or ``autoattack``: the AutoAttack-style ensemble of an independent
            library (:func:`~spikeweave.security.reference.ensemble`: APGD-CE, targeted
            APGD-DLR, DeepFool, and Square under L∞), needs ``spikeweave[attacks]``; its
            robust accuracy is the per-image worst case over the ensemble.
        eps: budgets in input units (``[0, 1]`` pixels), each ``>= 0``.
        steps / norm / step_size / eot: PGD's settings (``adaptive``, ``adaptive-surrogate``
            and ``transfer`` too); ``steps`` defaults to 20 (``autoattack``: APGD's iterations,
            default 100) and ``norm`` to ``linf`` (``square`` and ``autoattack`` take ``norm``
            too). Given to an attack that does not read them, they are refused.
        samples: how many images of ``split`` to attack (a seeded random subset), >= 1.
        queries: the square attack's query budget per image (default 1000; in
            ``autoattack`` 5000, AutoAttack's standard).
        source: the transfer attack's source run directory (a separately trained model).
        out_dir: where ``attack.json`` and ``attack.png`` go (default: ``run_dir``).
        device: where the models run (``auto``, ``cpu``, ``cuda``, ``cuda:N``); the attacks'
            random draws come from seeded CPU generators on every device.
        robustbench: also write, per ε, a RobustBench-style record
            ``robustbench-<norm>-<ε>.json`` (:mod:`~spikeweave.security.robustbench`): clean
            and robust accuracy, and the per-image worst case (an image counts only if it is
            right without attack and the attack failed on it).

    Returns the dict written to ``attack.json``: this attack's settings and results, and
    ``records``, one per attack setting and ε run into this folder so far.
    """
    from .. import data as datasets
    from ..training import load_run
    from ..training.assembly import data_options

    reference = attack == AUTOATTACK
    if not reference and attack not in ATTACKS:  # before any loading
        names = ", ".join([*ATTACKS.names(), AUTOATTACK])
        raise ConfigError(f"unknown attack {attack!r}; choose one of {names}")
    if reference and not reference_library.available():
        raise ConfigError(
            "--attack autoattack runs the Adversarial Robustness Toolbox's attacks, which is "
            "not installed: pip install 'spikeweave[attacks]'"
        )
    eps = [_check_eps(e) for e in eps]
    if not eps:
        raise ConfigError("give at least one --eps value")
    _refuse_unread(attack, steps=steps, norm=norm, source=source, queries=queries)
    if reference and norm == "l2" and queries is not None:
        raise ConfigError(
            "--queries is Square's budget, and an L2 autoattack runs without Square (it is "
            "L∞ only); leave --queries out"
        )
    steps = (100 if reference else 20) if steps is None else steps
    queries = (5000 if reference else 1000) if queries is None else queries
    _check_count("--queries", queries, "square attack queries")
    norm = "linf" if norm is None else norm
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    _check_eps_range(eps, "linf" if attack in ("fgsm", "square") else norm)
    _check_count("--steps", steps, "PGD steps")
    _check_count("--samples", samples, "test images attacked")
    if attack == "transfer" and source is None:
        raise ConfigError("the transfer attack needs --source RUN_DIR (a separately trained model)")
    run = load_run(run_dir, device=device)  # DataError for a missing directory or checkpoint
    # the output folder is checked before the attack runs, not after minutes of it
    out = make_folder(out_dir) if out_dir is not None else refuse_linked_folder(run.path)
    earlier = attack_records(out / "attack.json")  # a bad file is refused before the attack
    target = as_classifier(run)
    options: dict[str, Any] = {}
    if attack in _PGD_LIKE:
        options.update(steps=steps, norm=norm, step_size=step_size, eot=eot)
        if attack == "pgd":
            options.pop("eot")
    elif attack == "square":
        options.update(queries=queries, norm=norm)
    if attack == "transfer":
        options["source"] = as_classifier(load_run(source, device=device))
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; choose one of test, train")
    try:
        where = data_options(run.config, run.task.spec.temporal)
        dataset = datasets.load(run.config.dataset, split, **where)
    except KeyError as exc:  # pragma: no cover - registry errors are ConfigErrors already
        raise DataError(str(exc)) from None
    x, y = evaluation_subset(dataset, samples, seed)
    _check_eps_range(eps, "linf" if attack in ("fgsm", "square") else norm, x[0].numel())
    start = time.perf_counter()
    clean_mask = robust_mask("fgsm", target, x, y, 0.0, batch_size=batch_size, seed=seed)
    per_attack: list[dict[str, float]] | None = None
    if reference:
        masks, per_attack = _ensemble_masks(
            target, x, y, eps, clean_mask, norm=norm, apgd_steps=steps, square_queries=queries,
            seed=seed, batch_size=batch_size, num_classes=run.task.spec.num_outputs,
        )  # fmt: skip
    else:
        masks = [
            robust_mask(attack, target, x, y, e, batch_size=batch_size, seed=seed, **options)
            for e in eps
        ]
    clean = _share(clean_mask)
    acc = [_share(m) for m in masks]
    result = {
        "run": str(run.path),
        "attack": attack,
        "norm": "linf" if attack in ("fgsm", "square") else norm,
        "steps": steps if attack in (*_PGD_LIKE, AUTOATTACK) else None,
        "step_size": step_size,
        "queries": queries if attack == "square" or (reference and norm == "linf") else None,
        "eot": eot if attack in ("adaptive", "adaptive-surrogate", "transfer") else None,
        "source": None if source is None else str(source),
        "split": split,
        "samples": len(x),
        "seed": seed,
        "clean_accuracy": clean,
        "eps": eps,
        "robust_accuracy": acc,
        "time_s": round(time.perf_counter() - start, 2),
        "device": str(run.device),
    }
    if per_attack is not None:  # each attack of the ensemble, per ε
        result["ensemble"] = per_attack
    setting = {k: result[k] for k in _SETTING_KEYS}
    records = _merge(
        earlier,
        [{**setting, "eps": e, "robust_accuracy": a, "clean_accuracy": clean}
         for e, a in zip(eps, acc, strict=True)],
    )  # fmt: skip
    result["records"] = records
    atomic_write_bytes(out / "attack.json", json.dumps(result, indent=2).encode())
    if robustbench:
        result["robustbench"] = _write_robustbench(out, run, result, clean_mask, masks)
    plot_accuracy_vs_eps(
        _curves(records),
        out / "attack.png",
        f"{Path(run.path).name}: robust accuracy vs ε",
    )
    return result
