"""Event-camera compression: the lossless ``.sfev`` codec and pixel-sampled storage.

- :func:`encode_events` / :func:`decode_events`: events (``spikeweave.data.events.EVENT_DTYPE``)
  to ``.sfev`` bytes and back, exactly.
- :func:`compress_file` / :func:`decompress_file`: any file ``read_events`` reads to ``.sfev``;
  ``.sfev`` to N-MNIST ``.bin`` or ``.npz``; :func:`decompress_to_file` (the CLI's) does it in
  bounded memory, piece by piece (:func:`iter_events`). Writes are atomic.
- :func:`sample_events`: sampled mode (keep events at sampled pixels per time window), by
  default with the built-in trained spiking sampler (:mod:`.event_sampler`, trained by
  :mod:`.pretrain` on simulated saccade events, :mod:`.saccades`).

``docs/compression.md`` documents the file format and the measured sizes and speeds.
"""

from .codec import (
    CODECS,
    MAGIC,
    VERSION,
    Header,
    decode_events,
    encode_events,
    iter_events,
    read_header,
)
from .files import (
    CompressResult,
    compress_file,
    decompress_file,
    decompress_to_file,
    load_events,
    read_sfev,
    write_nmnist,
    write_npz,
)
from .sampling import sample_events

__all__ = [
    "CODECS",
    "MAGIC",
    "VERSION",
    "Header",
    "CompressResult",
    "decode_events",
    "iter_events",
    "encode_events",
    "read_header",
    "compress_file",
    "decompress_file",
    "decompress_to_file",
    "load_events",
    "read_sfev",
    "write_nmnist",
    "write_npz",
    "sample_events",
]
