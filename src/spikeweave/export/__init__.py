"""Export and import of trained models: NIR (the Neuromorphic Intermediate Representation).

See :mod:`spikeweave.export.nir` and docs/nir.md for the unit mapping and what is supported.
"""

from ..lazy import lazy_exports

# imported on first use: the CLI registers `export`/`import` without loading NIR or torch
_EXPORTS = {
    "to_nir": ".nir",
    "from_nir": ".nir",
    "save_nir": ".nir",
    "load_nir": ".nir",
    "read_graph": ".nir",
    "SumPool2d": ".nir",
    "InputScale": ".nir",
    "export_run": ".runs",
    "import_run": ".runs",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
