"""Event-camera compression: the lossless ``.sfev`` codec and pixel-sampled storage.

- :func:`encode_events` / :func:`decode_events`: events (``spikeweave.data.events.EVENT_DTYPE``)
  to ``.sfev`` bytes and back, exactly.
- :func:`compress_file` / :func:`decompress_file`: any file ``read_events`` reads to ``.sfev``;
  ``.sfev`` to N-MNIST ``.bin`` or ``.npz``; :func:`decompress_to_file` (the CLI's) does it in
  bounded memory, piece by piece (:func:`iter_events`). Writes are atomic.
- :func:`sample_events`: sampled mode (keep events at sampled pixels per time window), by
  default with the busiest-pixel baseline; ``--sampler spiking`` is the built-in trained
  spiking sampler (:mod:`.event_sampler`, trained by :mod:`.pretrain` on simulated saccade
  events, :mod:`.saccades`).
- :func:`sample_to_budget`: sampled mode under a size budget (:mod:`.budget`: the most pixels
  per window whose file fits a fraction of the lossless one; default sampler spiking).

``docs/compression.md`` documents the file format and the measured sizes and speeds.
"""

from ..lazy import lazy_exports

# imported on first use: the CLI registers `compress`/`decompress` without loading torch
_EXPORTS = {
    "CODECS": ".codec",
    "MAGIC": ".codec",
    "VERSION": ".codec",
    "Header": ".codec",
    "decode_events": ".codec",
    "iter_events": ".codec",
    "encode_events": ".codec",
    "read_header": ".codec",
    "resolve_codec": ".codec",
    "CompressResult": ".files",
    "compress_file": ".files",
    "decompress_file": ".files",
    "decompress_to_file": ".files",
    "load_events": ".files",
    "read_sfev": ".files",
    "write_nmnist": ".files",
    "write_npz": ".files",
    "sample_events": ".sampling",
    "sample_to_budget": ".budget",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
