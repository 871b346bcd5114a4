"""Export and import of trained models: NIR (the Neuromorphic Intermediate Representation).

See :mod:`spikeweave.export.nir` and docs/nir.md for the unit mapping and what is supported.
"""

from ..lazy import lazy_exports

# imported on first use: the CLI registers `export`/`import` without loading NIR or torch
_NIR = ("to_nir", "from_nir", "save_nir", "load_nir", "read_graph", "SumPool2d", "InputScale")
_EXPORTS = {**dict.fromkeys(_NIR, ".nir"), **dict.fromkeys(("export_run", "import_run"), ".runs")}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
