"""Regenerate data/snntorch_leaky.nir and data/snntorch_leaky_spikes.npz with snnTorch.

Run in an environment with snnTorch (see ../shared/docs/peers.md), from the repository root:

    python tests/export/make_snntorch_fixture.py

The network is Linear(20, 30) → Leaky → Linear(30, 10) → Leaky, β = 0.5, threshold 1, reset to
zero (the reset NIR's LIF has); β and the threshold are per-neuron tensors because snnTorch's
exporter writes scalars that nir 1.0's type check refuses. The file is what snnTorch's
``export_to_nir`` writes; the spikes are what snnTorch computes for the stored input
``x [T=12, B=8, 20]``. ``test_nir.py`` uses the same functions when snnTorch is installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data"


def snntorch_network() -> torch.nn.Sequential:
    """The snnTorch network, seeded."""
    import snntorch as snn

    torch.manual_seed(5)

    def leaky(n: int, output: bool = False) -> torch.nn.Module:
        return snn.Leaky(
            beta=torch.full((n,), 0.5),
            threshold=torch.ones(n),
            reset_mechanism="zero",
            init_hidden=True,
            output=output,
        )

    net = torch.nn.Sequential(
        torch.nn.Linear(20, 30), leaky(30), torch.nn.Linear(30, 10), leaky(10, output=True)
    )
    with torch.no_grad():  # default init leaves the output layer nearly silent
        net[0].weight.mul_(2.0)
        net[2].weight.mul_(4.0)
    return net


def snntorch_input() -> torch.Tensor:
    """``x [T=12, B=8, 20]``."""
    torch.manual_seed(4)
    return torch.rand(12, 8, 20) * 1.5


def snntorch_spikes(net: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """snnTorch's own output spikes ``[T, B, 10]``, stepping through time from rest."""
    from snntorch import utils

    utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(x[t])[0] for t in range(x.shape[0])])


def write_nir(net: torch.nn.Sequential, path: Path) -> Path:
    """``nir.write`` of snnTorch's ``export_to_nir`` (sample: one sample without batch)."""
    import nir
    from snntorch.export_nir import export_to_nir

    nir.write(path, export_to_nir(net, snntorch_input()[0, 0]))
    return path


def main() -> None:
    import snntorch as snn

    net, x = snntorch_network(), snntorch_input()
    DATA.mkdir(exist_ok=True)
    write_nir(net, DATA / "snntorch_leaky.nir")
    spikes = snntorch_spikes(net, x)
    np.savez_compressed(
        DATA / "snntorch_leaky_spikes.npz",
        x=x.numpy(),
        spikes=spikes.numpy(),
        snntorch_version=np.array(snn.__version__),
    )
    print(f"spike rate {spikes.mean():.3f}; wrote {DATA}")


if __name__ == "__main__":
    main()
