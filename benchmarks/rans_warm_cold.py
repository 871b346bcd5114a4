"""Decoding one N-MNIST file with ``rans`` and ``ctx3``: warm caches (the same file decoded back
to back) against cold ones (after a brotli run or an 8 MB sweep, as in the interleaved rounds of
``bench_compression.py``), and the compiled ``rans`` decoder alone. Process CPU time, medians of
30 decodes. Run pinned to one core:

    OMP_NUM_THREADS=1 PYTHONPATH=src taskset -c 1 python benchmarks/rans_warm_cold.py [FILE]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import brotli
import numpy as np

from spikeweave.compression import codec, ctx_native, load_events
from spikeweave.compression.codec import decode_events, encode_events
from spikeweave.data.events import make_events

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"


def main() -> None:
    default = REAL / "nmnist" / "slayerPytorch_NMNISTsmall" / "1.bs2"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    events, sensor, _ = load_events(path)
    raw = path.read_bytes()
    files = {c: encode_events(events, sensor, codec=c) for c in ("rans", "ctx3")}
    junk = np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8)
    lib = ctx_native.library("rans")
    view = memoryview(files["rans"])
    header, infos, offsets = codec._layout(view)
    blocks = codec._ctx_blocks(view, header, infos, offsets)
    work = np.empty(1 << 22, np.uint8)
    outs = [make_events(info.n) for info, _ in blocks]

    def c_only() -> None:
        for (info, pos), out in zip(blocks, outs, strict=True):
            data = np.frombuffer(view[pos : pos + info.comp_len], np.uint8)
            rc = lib.sf_rans_decode(
                data.ctypes.data, data.size, info.n, *sensor, info.flags, info.t_first,
                out.ctypes.data, work.ctypes.data, work.size,
            )  # fmt: skip
            assert rc == 0

    before = {
        "warm": lambda: None,
        "after brotli": lambda: brotli.compress(raw, quality=11),
        "after 8 MB sweep": lambda: junk.sum(),
    }
    jobs = {c: (lambda c=c: decode_events(files[c])) for c in files}
    jobs["rans C decoder alone"] = c_only
    print(f"{path.name}: {events.size} events; M events/s of CPU time (median of 30)")
    for label, pre in before.items():
        cells = []
        for name, job in jobs.items():
            took = []
            for _ in range(30):
                pre()
                start = time.process_time()
                job()
                took.append(time.process_time() - start)
            cells.append(f"{name} {events.size / np.median(took) / 1e6:.1f}")
        print(f"{label}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
