"""Run a NIR file through Norse or snnTorch, or write one with their exporters.

Run by ``test_nir_peers.py`` with the python of a separate peers environment (see
../shared/docs/peers.md); it imports neither spikeweave nor pytest, only torch, numpy, nir and
the peer. Two commands, arrays in and out as ``.npz``:

    python peer_runner.py run norse|snntorch MODEL.nir IN.npz OUT.npz [--dt DT]
        IN holds ``x`` [T, B, ...]; OUT gets ``spikes_0``, ``spikes_1``, ... (every spiking
        layer's output [T, B, ...], in the order the peer calls them) and ``out`` (the net's).
    python peer_runner.py write norse|snntorch OUT.nir IN.npz OUT.npz
        writes the peer's own Linear-first MLP (Linear(64, 30) → LIF → Linear(30, 10) → LIF,
        the layout ``export_to_nir`` / ``to_nir`` users write) and its spikes for ``x``.

Both peers step one time step at a time from rest, as peers.md describes.
"""

from __future__ import annotations

import sys

import nir
import numpy as np
import torch


def _spiking_types(peer: str) -> tuple[type, ...]:
    if peer == "norse":
        from norse.torch.module.iaf import IAFCell
        from norse.torch.module.lif_box import LIFBoxCell

        return (LIFBoxCell, IAFCell)
    import snntorch as snn

    return (snn.SpikingNeuron,)


def _import(peer: str, graph: object, dt: float) -> torch.nn.Module:
    if peer == "norse":
        import norse.torch

        return norse.torch.from_nir(graph, dt=dt)
    from snntorch.import_nir import import_from_nir

    return import_from_nir(graph)


def _reset(peer: str, net: torch.nn.Module) -> None:
    if peer == "snntorch":
        import snntorch as snn

        for m in net.modules():
            if isinstance(m, snn.SpikingNeuron) and getattr(m, "init_hidden", False):
                m.reset_hidden()


def _first(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def run(peer: str, path: str, inp: str, out: str, dt: float) -> None:
    """Every spiking layer's output and the net's output for ``x``, stepped in time."""
    net = _import(peer, nir.read(path), dt).eval()
    x = torch.from_numpy(np.load(inp)["x"])
    calls: list[torch.Tensor] = []
    kinds = _spiking_types(peer)
    for m in net.modules():
        if isinstance(m, kinds):
            m.register_forward_hook(lambda _m, _i, o: calls.append(_first(o).detach().clone()))
    _reset(peer, net)
    state, outs, per_step = None, [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            calls.clear()
            if peer == "norse":
                y, state = net(x[t], state)
            else:
                y = _first(net(x[t]))
            outs.append(y)
            per_step.append(list(calls))
    layers = {f"spikes_{i}": torch.stack([s[i] for s in per_step]).numpy()
              for i in range(len(per_step[0]))}  # fmt: skip
    np.savez(out, out=torch.stack(outs).numpy(), **layers)


def write(peer: str, path: str, inp: str, out: str) -> None:
    """The peer's own Linear-first MLP as NIR, and the spikes it computes for ``x``."""
    x = torch.from_numpy(np.load(inp)["x"])  # [T, B, 64]
    torch.manual_seed(7)
    if peer == "snntorch":
        import snntorch as snn
        from snntorch.export_nir import export_to_nir

        def leaky(n: int, output: bool = False) -> torch.nn.Module:
            # per-neuron tensors: nir 1.0 refuses the scalars snnTorch writes otherwise
            return snn.Leaky(beta=torch.full((n,), 0.5), threshold=torch.ones(n),
                             reset_mechanism="zero", init_hidden=True, output=output)  # fmt: skip

        net = torch.nn.Sequential(
            torch.nn.Linear(64, 30), leaky(30), torch.nn.Linear(30, 10), leaky(10, True)
        )
        with torch.no_grad():
            net[0].weight.mul_(3.0)
            net[2].weight.mul_(4.0)
        graph = export_to_nir(net, x[0, 0])
        for m in net.modules():
            if isinstance(m, snn.SpikingNeuron):
                m.reset_hidden()
        with torch.no_grad():
            spikes = torch.stack([_first(net(x[t])) for t in range(x.shape[0])])
    else:
        import norse.torch as norse
        from norse.torch.module.lif_box import LIFBoxCell, LIFBoxParameters

        def cell(n: int) -> torch.nn.Module:
            p = LIFBoxParameters(tau_mem_inv=torch.full((n,), 500.0), v_th=torch.ones(n),
                                 v_leak=torch.zeros(n), v_reset=torch.zeros(n))  # fmt: skip
            return LIFBoxCell(p, dt=1e-3)

        net = norse.SequentialState(torch.nn.Linear(64, 30), cell(30), torch.nn.Linear(30, 10),
                                    cell(10))  # fmt: skip
        with torch.no_grad():
            net[0].weight.mul_(6.0)
            net[2].weight.mul_(8.0)
        graph = norse.to_nir(net, x[0, 0], dt=1e-3)
        state, outs = None, []
        with torch.no_grad():
            for t in range(x.shape[0]):
                z, state = net(x[t], state)
                outs.append(z)
        spikes = torch.stack(outs)
    nir.write(path, graph)
    np.savez(out, spikes=spikes.numpy())


if __name__ == "__main__":
    cmd, peer, *rest = sys.argv[1:]
    if cmd == "run":
        dt = float(rest[rest.index("--dt") + 1]) if "--dt" in rest else 1e-3
        run(peer, rest[0], rest[1], rest[2], dt)
    else:
        write(peer, rest[0], rest[1], rest[2])
