"""RobustBench-style records of an adversarial evaluation (issue 30, item 4).

One JSON object per evaluated model and threat model, with RobustBench's field names where it
has them (``name``, ``dataset``, ``threat_model``, ``eps``, ``clean_acc``, ``autoattack_acc``;
accuracies in **percent**, as RobustBench's model cards give them) and what its cards leave
out for a reproducible claim:

- ``format``: ``"spikeweave-robustbench/1"`` (what :func:`read_record` accepts);
- ``name``: the model (a run directory's name or an experiment's arm);
- ``dataset``; ``threat_model``: ``"Linf"`` or ``"L2"``; ``eps``: the budget in ``[0, 1]``
  pixel units (RobustBench writes 8/255 as 0.03137...);
- ``clean_acc``: accuracy (%) on the attacked images without attack;
- ``robust_acc``: ``{attack: accuracy (%)}``, each attack alone on the same images;
- ``worst_case_acc``: the **per-image** worst case over those attacks (%): an image counts only
  if every attack failed on it; null where the per-image outcome was not kept;
- ``autoattack_acc``: the worst case when the attacks are the AutoAttack-style ensemble of
  :mod:`.reference`, else null (RobustBench's headline number is AutoAttack's);
- ``n_examples``: images attacked (per seed); ``seeds``: the evaluation seeds (the accuracies
  are means over them);
- ``library``: ``{"name": "spikeweave", "version": ...}``; ``commit``: the source tree's git
  commit (null with ``commit_note`` when unknown);
- ``extra``: free-form settings (steps, queries, surrogate, ...).

:func:`write_record` writes atomically, never through a link; :func:`read_record` reads one
back with its size and fields checked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, DataError
from ..version import __version__, git_commit

__all__ = ["FORMAT", "THREAT_MODELS", "read_record", "robustbench_record", "write_record"]

FORMAT = "spikeweave-robustbench/1"
THREAT_MODELS = {"linf": "Linf", "l2": "L2"}
"""Our norm names and RobustBench's threat-model names."""
_MAX_BYTES = 1 << 20  # one record is a few hundred bytes; anything far larger is not ours
_REQUIRED = ("format", "name", "dataset", "threat_model", "eps", "clean_acc", "robust_acc",
             "worst_case_acc", "autoattack_acc", "n_examples", "seeds", "library",
             "commit")  # fmt: skip


def _percent(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"{what} must be an accuracy in [0, 1], got {value!r}")
    return 100 * float(value)


def robustbench_record(
    *,
    name: str,
    dataset: str,
    norm: str,
    eps: float,
    clean_accuracy: float,
    robust_accuracy: Mapping[str, float],
    n_examples: int,
    seeds: Sequence[int],
    worst_case: float | None = None,
    autoattack: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of one evaluation; accuracies are fractions in ``[0, 1]`` here and percent in
    the record. ``autoattack`` says the attacks are :mod:`.reference`'s AutoAttack-style
    ensemble (then ``autoattack_acc`` is ``worst_case``). One-line ConfigError for a bad field."""
    if norm not in THREAT_MODELS:
        raise ConfigError(f"unknown norm {norm!r}; choose one of {', '.join(THREAT_MODELS)}")
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not (
        math.isfinite(eps) and eps >= 0
    ):  # fmt: skip
        raise ConfigError(f"eps must be a finite budget >= 0, got {eps!r}")
    if not robust_accuracy:
        raise ConfigError("a robustness record needs at least one attack's accuracy")
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ConfigError(f"n_examples must be a positive count, got {n_examples!r}")
    if autoattack and worst_case is None:
        raise ConfigError("an AutoAttack record needs the per-image worst case")
    commit, note = git_commit()
    record: dict[str, Any] = {
        "format": FORMAT,
        "name": str(name),
        "dataset": str(dataset),
        "threat_model": THREAT_MODELS[norm],
        "eps": float(eps),
        "clean_acc": _percent(clean_accuracy, "clean accuracy"),
        "robust_acc": {
            str(k): _percent(v, f"robust accuracy of {k}") for k, v in robust_accuracy.items()
        },  # fmt: skip
        "worst_case_acc": _percent(worst_case, "worst-case accuracy"),
        "autoattack_acc": _percent(worst_case, "worst-case accuracy") if autoattack else None,
        "n_examples": n_examples,
        "seeds": [int(s) for s in seeds],
        "library": {"name": "spikeweave", "version": __version__},
        "commit": commit,
    }
    if note:
        record["commit_note"] = note
    if extra:
        record["extra"] = dict(extra)
    return record


def write_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` (from :func:`robustbench_record`) as JSON to ``path``, atomically and
    never through a link; returns ``path``."""
    return atomic_write_bytes(Path(path), json.dumps(dict(record), indent=2).encode())


def read_record(path: str | Path) -> dict[str, Any]:
    """The record at ``path``; one-line DataError for a link, an oversized, malformed or
    foreign file."""
    path = Path(path)
    if path.is_symlink():
        raise DataError(f"{path} is a link; robustness records are not read through links")
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise DataError(f"{path} is larger than {_MAX_BYTES} bytes; not a robustness record")
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    if (
        not isinstance(value, dict)
        or value.get("format") != FORMAT
        or any(k not in value for k in _REQUIRED)
        or not isinstance(value["robust_acc"], dict)
    ):
        raise DataError(f"{path} is not a robustness record written by spikeweave ({FORMAT})")
    return value
