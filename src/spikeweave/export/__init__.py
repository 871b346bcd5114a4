"""Export and import of trained models: NIR (the Neuromorphic Intermediate Representation).

See :mod:`spikeweave.export.nir` and docs/nir.md for the unit mapping and what is supported.
"""

from .nir import InputScale, SumPool2d, from_nir, load_nir, read_graph, save_nir, to_nir
from .runs import export_run, import_run

__all__ = [
    "to_nir",
    "from_nir",
    "save_nir",
    "load_nir",
    "read_graph",
    "SumPool2d",
    "InputScale",
    "export_run",
    "import_run",
]
