"""Run directories to and from NIR files: what ``spikeweave export`` and ``spikeweave import`` do.

``export_run(RUN_DIR, "model.nir", dt=1e-3)`` writes the run's model with its dataset, encoder
and steps in the graph's metadata. ``import_run("model.nir", OUT_DIR)`` writes a run directory
that :func:`~spikeweave.training.load_run` and ``spikeweave eval`` accept: the graph must be an
MLP that a :class:`~spikeweave.training.TrainConfig` can describe (``model = "mlp"``,
``batch_norm = false``, one neuron type with one set of parameters), because ``load_run``
rebuilds the network from the config. The run's parts come from
:func:`~spikeweave.training.assemble` and the directory is written by
:func:`~spikeweave.training.save_run` at epoch 0 (no epoch trained here), so ``spikeweave train
--resume OUT_DIR --epochs N`` fine-tunes it as well.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import output_error
from ..errors import ConfigError
from ..layers import TimeFolded
from ..neurons import IF, LIF
from ..training.device import model_device, resolve_device
from . import nir as _nir_module
from .nir import (
    _graph_dt,
    _import_layers,
    _Imported,
    from_nir,
    meta_steps,
    meta_str,
    read_graph,
    save_nir,
)

__all__ = ["export_run", "import_run", "IMPORT_RECORD"]

IMPORT_RECORD = "import.json"
"""The file in an imported run that says where it came from (source, dt, nodes)."""


def export_run(run_dir: str | Path, path: str | Path, dt: float, peer: str = "nir") -> Path:
    """Write the model of the run in ``run_dir`` to the NIR file ``path``; ``dt`` in seconds.

    ``peer`` (``nir``, ``norse`` or ``snntorch``) refuses what that library would load as a
    different network (:func:`~spikeweave.export.nir.check_peer`).
    """
    from ..training import load_run

    return save_nir(load_run(run_dir), path, dt=dt, peer=peer)


def _meta(graph: Any, key: str) -> Any:
    """The graph's metadata ``key`` as stored (checked by the caller for its type), or None."""
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    return meta.get(key)


def _meta_text(graph: Any, key: str) -> str | None:
    value = _meta(graph, key)
    return None if value is None else meta_str(f"metadata {key!r}", value)


def _not_mlp(why: str) -> ConfigError:
    return ConfigError(
        f"NIR import: {why}, so no TrainConfig describes this graph and `spikeweave eval` could "
        "not rebuild it; load it in Python with spikeweave.export.load_nir instead"
    )


def _neuron_fields(neuron: nn.Module) -> dict[str, Any]:
    if isinstance(neuron, LIF):
        return {
            "neuron": "lif",
            "tau": neuron.tau,
            "threshold": neuron.threshold,
            "v_reset": neuron.v_reset,
            "decay_input": neuron.decay_input,
        }
    assert isinstance(neuron, IF)
    return {"neuron": "if", "threshold": neuron.threshold, "v_reset": neuron.v_reset}


def _mlp_fields(layers: list[tuple[str, _Imported]]) -> tuple[dict[str, Any], list[nn.Linear]]:
    """TrainConfig fields of an MLP graph and its Linear layers in order, or a ConfigError."""
    items = [item for _, item in layers]
    for key, item in layers:
        if item.kind in ("conv", "pool", "scale"):
            what = {"conv": "a Conv2d", "pool": "pooling", "scale": "an input scale (R)"}
            raise _not_mlp(f"node '{key}' is {what[item.kind]}, which spikeweave's MLP has not")
    if items and items[0].kind == "flatten":
        items = items[1:]
    readout = items.pop() if items and items[-1].kind == "readout" else None
    out_neuron = items.pop() if items and items[-1].kind == "neuron" else None
    if not items or items[-1].kind != "affine":
        raise _not_mlp("it does not end in an Affine/Linear output layer (+ neuron)")
    fc_out = items.pop()
    pairs = list(zip(items[0::2], items[1::2], strict=False))
    if len(items) % 2 or any(a.kind != "affine" or n.kind != "neuron" for a, n in pairs):
        raise _not_mlp("its hidden layers are not Affine/Linear followed by a neuron")
    if not pairs:
        raise _not_mlp("it has no hidden layer (TrainConfig's empty `hidden` means the default)")
    neurons = [n.module for _, n in pairs] + ([out_neuron.module] if out_neuron else [])
    fields = [_neuron_fields(n) for n in neurons]
    if any(f != fields[0] for f in fields):
        raise _not_mlp("its neurons differ in type or parameters (a TrainConfig has one neuron)")
    linears = [a.module.module for a, _ in pairs] + [fc_out.module.module]
    out_features = linears[-1].out_features
    if readout is not None:
        population = readout.module.population
        num_classes = readout.module.num_classes
    else:
        population, num_classes = 1, out_features
    values = dict(fields[0])
    values.update(
        hidden=[lin.out_features for lin in linears[:-1]],
        population=population,
        readout="spikes" if out_neuron is not None else "linear",
        num_classes=num_classes,
        in_features=linears[0].in_features,
    )
    return values, linears


def import_run(
    path: str | Path,
    out_dir: str | Path,
    *,
    dataset: str | None = None,
    steps: int | None = None,
    encoder: str | None = None,
    dt: float | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Write a run directory for the NIR graph in ``path``; returns it.

    ``dataset``, ``steps`` and ``encoder`` default to what :func:`export_run` recorded in the
    graph's metadata (a foreign file needs ``dataset`` and ``steps``; the encoder defaults to
    ``direct``); ``dt`` (seconds per step) to the recorded one. The imported run's model gives
    the same outputs as :func:`~spikeweave.export.from_nir` of the graph (checked here, on
    ``device``: ``cpu`` (default), ``auto``, ``cuda`` or ``cuda:N`` as for training; a GPU
    that is not there is a one-line ``ConfigError``, raised before anything is written).
    The checkpoint holds CPU tensors wherever the check ran.
    """
    from .. import data
    from ..training import RunDir, TrainConfig, assemble, save_run

    resolve_device(device)  # a GPU that is not there: refused before the file is read
    graph = read_graph(path)
    step = _graph_dt(graph, dt)
    in_shape, layers = _import_layers(graph, step)
    fields, linears = _mlp_fields(layers)
    task = _meta_text(graph, "task") or "classification"
    if task != "classification":
        raise _not_mlp(f"its task is {task!r} and import builds classification runs")
    dataset = dataset or _meta_text(graph, "dataset")
    if steps is not None:
        steps = meta_steps("steps", steps)
    elif _meta(graph, "steps") is not None:
        # the limit applies to the file's value only: --steps is the user's own choice
        steps = meta_steps("metadata 'steps'", _meta(graph, "steps"), _nir_module.MAX_NIR_STEPS)
    encoder = encoder or _meta_text(graph, "encoder") or "direct"
    if not dataset or steps is None:
        missing = "dataset" if not dataset else "steps"
        raise ConfigError(
            f"NIR import: the file does not record the {missing} it was made for; pass "
            f"--{missing} (dataset: one of {', '.join(data.DATASETS)}; steps: T)"
        )
    info = data.info(dataset)
    n_in = int(np.prod(info.input_shape))
    if fields.pop("in_features") != n_in or fields["num_classes"] != info.num_classes:
        raise ConfigError(
            f"NIR import: the graph maps {linears[0].in_features} inputs to "
            f"{fields['num_classes']} classes but dataset {dataset!r} has {n_in} inputs and "
            f"{info.num_classes} classes; pass the --dataset it was trained on"
        )
    fields.pop("num_classes")
    if in_shape and math.prod(in_shape) != n_in:
        raise ConfigError(
            f"NIR import: the graph's Input has shape {in_shape}, which does not hold the "
            f"{n_in} inputs its first layer takes; the file is inconsistent"
        )
    rundir = RunDir(out_dir)
    try:
        occupied = rundir.path.is_dir() and any(rundir.path.iterdir())
    except OSError as exc:  # a name too long, no permission
        raise output_error(rundir.path, exc, "create run directory") from None
    if occupied:
        raise ConfigError(f"{rundir.path} exists and is not empty; choose a new OUT_DIR")
    config = TrainConfig(
        dataset=dataset,
        model="mlp",
        batch_norm=False,
        reset="hard",
        steps=int(steps),
        encoder=str(encoder),
        epochs=1,
        notes={"imported_from": str(path), "dt_s": step},
        **fields,
    )
    parts = assemble(config, device=device)
    targets = [
        m.module
        for m in parts.model.children()
        if isinstance(m, TimeFolded) and isinstance(m.module, nn.Linear)
    ]
    with torch.no_grad():
        for src, dst in zip(linears, targets, strict=True):
            dst.weight.copy_(src.weight)
            # A NIR Linear has no bias: zero is exact (x + 0 == x).
            dst.bias.copy_(src.bias if src.bias is not None else torch.zeros_like(dst.bias))
    parts.model.eval()
    # The run's MLP always flattens the dataset's samples; a graph that starts with its
    # Affine (snnTorch's export_to_nir and Norse's to_nir write MLPs so) takes the flat vector.
    flat_first = bool(layers) and layers[0][1].kind == "flatten"
    graph_in = (in_shape or tuple(info.input_shape)) if flat_first else (n_in,)
    _check_same(
        from_nir(graph, dt=step).to(parts.device), parts.model, tuple(info.input_shape),
        graph_in, int(steps),
    )  # fmt: skip
    created = not rundir.path.exists()
    rundir.create()
    try:
        with rundir.lock():
            record = {
                "source": str(path),
                "dt_s": step,
                "nodes": {k: type(n).__name__ for k, n in graph.nodes.items()},
                "epochs_trained_here": 0,
            }
            records = {IMPORT_RECORD: json.loads(json.dumps(record))}
            save_run(rundir, parts, records=records, files={"model.nir": path})
    except BaseException:
        if created:  # a failed import (a full disk) leaves no half-written run behind
            rundir.remove()
        raise
    return rundir.path


def _check_same(
    imported: nn.Module,
    run_model: nn.Module,
    shape: tuple[int, ...],
    graph_shape: tuple[int, ...],
    T: int,
) -> None:
    """Refuse to write a run whose model would not compute what the graph computes.

    ``shape`` is the dataset's sample shape (the run's MLP flattens it), ``graph_shape`` the
    shape the graph takes (the same numbers: ``(1, 8, 8)``, or ``(64,)`` for a graph that
    starts with its Affine). Both models are on the same device; the input is drawn on the
    CPU (the same on every device) and moved there.
    """
    gen = torch.Generator().manual_seed(0)
    x = (2.0 * torch.rand((T, 8, *shape), generator=gen)).to(model_device(run_model))
    x_graph = x.reshape(T, 8, *graph_shape)
    try:
        with torch.no_grad():
            same = torch.equal(imported(x_graph), run_model(x))
    except (RuntimeError, ValueError) as exc:  # shapes the checks above did not foresee
        msg = " ".join(str(exc).split())[:120]
        raise ConfigError(
            f"NIR import: the graph does not run on the dataset's {tuple(shape)} samples "
            f"({msg}); pass the --dataset it was made for, or load it with load_nir"
        ) from None
    if not same:  # pragma: no cover - a mapping bug, not a user error
        raise ConfigError("NIR import: the rebuilt MLP differs from the graph; please report it")
