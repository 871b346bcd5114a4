"""NIR files we did not write (issue 28): nothing read from outside the file, declared sizes
checked against limits before anything is allocated, malformed metadata refused in one line.

Red-team style: every test crafts a hostile file with h5py and checks the refusal, through the
Python API and through ``spikeweave import`` (exit status 2, one ``error:`` line).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from cli_run import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiers import examples
from torch import nn

import spikeweave as sf
from spikeweave.errors import ConfigError, DataError, SpikeweaveError
from spikeweave.export import from_nir, import_run, load_nir, read_graph, to_nir
from spikeweave.export import nir as sw_nir
from spikeweave.layers import TimeFolded

SECRET = b"TOP-SECRET-API-KEY"


def assert_one_line_error(code: int, out: str, err: str, match: str = "") -> str:
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    assert match in lines[0], lines[0]
    return lines[0]


def _mlp() -> nn.Sequential:
    """A digits-sized MLP (64 inputs, 10 classes) that ``spikeweave import`` accepts."""
    return nn.Sequential(
        TimeFolded(nn.Linear(64, 12)),
        sf.LIF(tau=2.0),
        TimeFolded(nn.Linear(12, 10)),
        sf.LIF(tau=2.0),
    ).eval()


def _write(path: Path, metadata: dict | None = None) -> Path:
    meta = {"dataset": "digits", "steps": 4, "encoder": "direct"}
    meta.update(metadata or {})
    nir.write(path, to_nir(_mlp(), dt=1e-3, input_shape=(64,), metadata=meta))
    return path


@pytest.fixture
def good(tmp_path) -> Path:
    return _write(tmp_path / "good.nir")


def _replace_weight(path: Path, make) -> None:
    """Replace node "0"'s weight with what ``make(group, name)`` creates."""
    with h5py.File(path, "r+") as f:
        group = f["node/nodes/0"]
        del group["weight"]
        make(group, "weight")


def _secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET + b"\0" * (12 * 64 * 4 - len(SECRET)))
    return secret


def _external_storage(tmp_path: Path, group, name: str) -> None:
    secret = _secret_file(tmp_path)
    group.create_dataset(name, shape=(12, 64), dtype="f4", external=[(str(secret), 0, 12 * 64 * 4)])


def _external_link(tmp_path: Path, group, name: str) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as o:
        o["w"] = np.frombuffer(_secret_file(tmp_path).read_bytes(), dtype="f4").reshape(12, 64)
    group[name] = h5py.ExternalLink(str(other), "/w")


def _virtual(tmp_path: Path, group, name: str) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as o:
        o["w"] = np.frombuffer(_secret_file(tmp_path).read_bytes(), dtype="f4").reshape(12, 64)
    layout = h5py.VirtualLayout(shape=(12, 64), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "w", shape=(12, 64))
    group.create_virtual_dataset(name, layout)


def _soft_link(tmp_path: Path, group, name: str) -> None:
    group.file["/stash"] = np.zeros((12, 64), dtype="f4")
    group[name] = h5py.SoftLink("/stash")


@pytest.mark.parametrize(
    "make, words",
    [
        (_external_storage, "outside file"),
        (_external_link, "external link"),
        (_virtual, "virtual dataset"),
        (_soft_link, "soft link"),
    ],
    ids=["external-storage", "external-link", "virtual-dataset", "soft-link"],
)
def test_a_weight_stored_outside_the_file_is_refused_and_never_read(
    tmp_path, good, make, words, capfd
):
    _replace_weight(good, lambda g, n: make(tmp_path, g, n))
    # h5py itself would read the outside bytes: the crafted file really points at the secret
    if make is not _soft_link:
        with h5py.File(good, "r") as f:
            assert f["node/nodes/0/weight"][()].tobytes().startswith(SECRET)
    with pytest.raises(DataError) as excinfo:
        load_nir(good)
    msg = str(excinfo.value)
    assert "\n" not in msg and words in msg and "node/nodes/0/weight" in msg
    out_dir = tmp_path / "imported"
    code, out, err = run_main("import", str(good), str(out_dir))
    assert_one_line_error(code, out, err, words)
    captured = capfd.readouterr()
    for text in (msg, out, err, captured.out, captured.err):
        assert SECRET.decode() not in text
    assert not out_dir.exists()


def test_a_group_linked_into_itself_is_refused_not_walked_forever(good):
    with h5py.File(good, "r+") as f:
        f["node/nodes/0"]["loop"] = f["node/nodes"]
    with pytest.raises(DataError, match="second link"):
        read_graph(good)


def test_a_dataset_that_decodes_past_the_limit_is_refused_before_any_data_is_read(good):
    # 40 kB on disk, 800 MB declared: gzip of zeros inflates about a thousandfold
    with h5py.File(good, "r+") as f:
        group = f["node/nodes/0"]
        del group["weight"]
        group.create_dataset(
            "weight", shape=(12, 2**24), dtype="f4", compression="gzip", chunks=(1, 2**20)
        )
    assert good.stat().st_size < 200_000
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        with pytest.raises(DataError) as excinfo:
            read_graph(good)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "MAX_NIR_ARRAY_BYTES" in str(excinfo.value) and "(12, 16777216)" in str(excinfo.value)
    assert peak < 16 * 2**20, peak
    code, out, err = run_main("import", str(good), str(good.parent / "out"))
    assert_one_line_error(code, out, err, "MAX_NIR_ARRAY_BYTES")


def test_many_datasets_under_the_per_array_limit_are_refused_by_the_total_limit(good, monkeypatch):
    with h5py.File(good, "r+") as f:
        size = f["node/nodes/0/weight"].size * 4
    monkeypatch.setattr(sw_nir, "MAX_NIR_TOTAL_BYTES", size * 2)
    read_graph(good)  # one 12x64 weight, one 10x12 weight and small vectors fit
    with h5py.File(good, "r+") as f:
        for i in range(3):
            f[f"node/nodes/0/metadata/pad{i}"] = np.zeros(12 * 64, dtype="f4")
    with pytest.raises(DataError, match="MAX_NIR_TOTAL_BYTES"):
        read_graph(good)


def test_the_limits_are_module_constants_that_code_can_change(good, monkeypatch):
    monkeypatch.setattr(sw_nir, "MAX_NIR_ARRAY_BYTES", 1024)
    with pytest.raises(DataError, match=r"MAX_NIR_ARRAY_BYTES \(1024\)"):
        load_nir(good)  # the 12x64 float32 weight is 3072 bytes
    monkeypatch.setattr(sw_nir, "MAX_NIR_ARRAY_BYTES", 4096)
    assert isinstance(load_nir(good), nn.Sequential)
    monkeypatch.setattr(sw_nir, "MAX_NIR_OBJECTS", 5)
    with pytest.raises(DataError, match="MAX_NIR_OBJECTS|5 objects"):
        load_nir(good)


def test_neuron_parameters_that_would_broadcast_into_a_huge_array_are_refused(good):
    # nir's CubaLIF computes w_in * ones_like(v_leak): (N, 1) against (N,) gives N x N
    with h5py.File(good, "r+") as f:
        group = f["node/nodes/1"]
        del group["r"]
        group["r"] = np.ones((12, 1))
    with pytest.raises(DataError, match="different shapes"):
        read_graph(good)


def test_complex_weights_are_refused_not_cast_to_their_real_part(tmp_path, good):
    with h5py.File(good, "r+") as f:
        w = f["node/nodes/0/weight"][()]
    _replace_weight(good, lambda g, n: g.create_dataset(n, data=w.astype(np.complex64) + 1j))
    with pytest.raises(DataError, match="complex"):
        load_nir(good)
    code, out, err = run_main("import", str(good), str(tmp_path / "out"))
    assert_one_line_error(code, out, err, "complex")
    # an in-memory graph with complex weights is refused too
    graph = to_nir(_mlp(), dt=1e-3, input_shape=(64,))
    graph.nodes["0"].weight = graph.nodes["0"].weight.astype(np.complex64) * (1 + 1j)
    with pytest.raises(ConfigError, match="complex"):
        from_nir(graph)


def test_unsupported_hdf5_types_and_filters_are_refused(good):
    with h5py.File(good, "r+") as f:
        f["node/nodes/0/metadata/ref"] = f["node"].ref
    with pytest.raises(DataError, match="HDF5 type"):
        read_graph(good)


@pytest.mark.parametrize("steps", [2.7, 0, -3, "4", True, float("nan"), 10**12])
def test_a_steps_value_that_is_not_a_positive_integer_is_refused(tmp_path, steps):
    path = _write(tmp_path / "m.nir", {"steps": steps})
    out_dir = tmp_path / "out"
    with pytest.raises(ConfigError) as excinfo:
        import_run(path, out_dir)
    assert "steps" in str(excinfo.value) and "\n" not in str(excinfo.value)
    code, out, err = run_main("import", str(path), str(out_dir))
    assert_one_line_error(code, out, err, "steps")
    assert not out_dir.exists()


def test_a_whole_float_steps_value_imports_as_that_many_steps(tmp_path):
    path = _write(tmp_path / "m.nir", {"steps": 3.0})
    run = sf.training.load_run(import_run(path, tmp_path / "out"))
    assert run.config.steps == 3


@pytest.mark.parametrize("dt", ["abc", b"\xff", np.array([1e-3, 2e-3]), -1.0, float("inf")])
def test_a_malformed_dt_in_the_metadata_is_a_one_line_error(tmp_path, dt):
    path = _write(tmp_path / "m.nir")
    with h5py.File(path, "r+") as f:
        del f["node/metadata/dt"]
        f["node/metadata/dt"] = dt
    with pytest.raises(SpikeweaveError) as excinfo:
        load_nir(path)
    assert "dt" in str(excinfo.value) and "\n" not in str(excinfo.value)
    code, out, err = run_main("import", str(path), str(tmp_path / "out"))
    assert_one_line_error(code, out, err, "dt")
    if not isinstance(dt, bytes):  # text that is not UTF-8 makes the file itself unreadable
        assert isinstance(load_nir(path, dt=1e-3), nn.Sequential)  # an explicit dt is used


# Metadata values of every HDF5-storable kind nir.write produces.
_VALUES = st.one_of(
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20),
    st.binary(min_size=1, max_size=20).filter(lambda b: b"\0" not in b),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.floats(allow_nan=False, width=32), min_size=0, max_size=4).map(np.array),
    st.lists(st.integers(-5, 5), min_size=1, max_size=3).map(lambda v: np.array(v).reshape(-1, 1)),
)
_GRAPH_KEYS = ("dt", "steps", "dataset", "encoder", "task")
_NODE_KEYS = ("tau_steps", "decay_input")


@pytest.mark.slow
@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzzed_metadata_is_imported_or_refused_in_one_line(tmp_path, data):
    graph_meta = data.draw(st.dictionaries(st.sampled_from(_GRAPH_KEYS), _VALUES, max_size=3))
    node_meta = data.draw(st.dictionaries(st.sampled_from(_NODE_KEYS), _VALUES, max_size=2))
    path = tmp_path / "fuzz.nir"
    _write(path)
    with h5py.File(path, "r+") as f:
        for group, meta in (("node/metadata", graph_meta), ("node/nodes/1/metadata", node_meta)):
            for key, value in meta.items():
                if key in f[group]:
                    del f[group][key]
                f[group][key] = value
    # an occupied OUT_DIR ends a successful import right after the metadata is read
    busy = tmp_path / "busy"
    busy.mkdir(exist_ok=True)
    (busy / "x").touch()
    try:
        import_run(path, busy)
    except SpikeweaveError as exc:
        assert "\n" not in str(exc)
    try:
        from_nir(read_graph(path))
    except SpikeweaveError as exc:
        assert "\n" not in str(exc)
