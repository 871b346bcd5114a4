"""IDX (MNIST, Fashion-MNIST) and CIFAR-10 python batches: byte-exact files, datasets, fuzzing."""

from __future__ import annotations

import gzip
import io
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spikeweave_format_writers import cifar_batch_bytes, idx_bytes, write
from tiers import examples

from spikeweave import data
from spikeweave.data.static import read_cifar_batch, read_idx, write_idx
from spikeweave.errors import DataError

RNG = np.random.default_rng(0)


def test_idx_header_bytes_by_hand(tmp_path):
    labels = np.array([7, 2, 1], dtype=np.uint8)
    blob = idx_bytes(labels)
    assert blob == b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x02\x01"  # magic 0x00000801
    images = RNG.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    assert (
        idx_bytes(images)[:16]
        == b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x1c" * 2
    )
    assert np.array_equal(read_idx(write(tmp_path / "l", blob)), labels)
    assert np.array_equal(
        read_idx(write(tmp_path / "i.gz", gzip.compress(idx_bytes(images)))), images
    )


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_idx_every_element_type_roundtrips(tmp_path, dtype):
    arr = (RNG.standard_normal((3, 4, 5)) * 50).astype(dtype)
    out = read_idx(write(tmp_path / "a", idx_bytes(arr)))
    assert out.dtype.isnative and np.array_equal(out, arr)
    assert np.array_equal(read_idx(write_idx(tmp_path / "b.gz", arr)), arr)


def test_idx_errors_name_file_and_offset(tmp_path):
    blob = idx_bytes(RNG.integers(0, 256, (2, 28, 28), dtype=np.uint8))
    with pytest.raises(
        DataError, match=r"i: truncated: shape \(2, 28, 28\) needs 1568 bytes .* offset 16"
    ):
        read_idx(write(tmp_path / "i", blob[:-5]))
    with pytest.raises(DataError, match=r"3 unexpected byte\(s\) .* byte offset 1584"):
        read_idx(write(tmp_path / "j", blob + b"abc"))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(write(tmp_path / "k", b"\x01" + blob[1:]))
    with pytest.raises(DataError, match="unknown IDX element type 0x07 at byte offset 2"):
        read_idx(write(tmp_path / "m", blob[:2] + b"\x07" + blob[3:]))
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(write(tmp_path / "n.gz", gzip.compress(blob)[:-9]))
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "missing")


def test_cifar_batch_as_python2_wrote_it(tmp_path):
    images = RNG.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    blob = cifar_batch_bytes(images, [0, 9, 3, 3])
    assert blob.startswith(b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\n")
    x, y = read_cifar_batch(write(tmp_path / "data_batch_1", blob))
    assert np.array_equal(x, images) and y.tolist() == [0, 9, 3, 3] and y.dtype == np.int64


def test_cifar_batch_written_by_python3_numpy_too(tmp_path):
    images = RNG.integers(0, 256, (2, 3072), dtype=np.uint8)
    blob = pickle.dumps({b"data": images, b"labels": [1, 2]}, protocol=2)
    x, _ = read_cifar_batch(write(tmp_path / "b", blob))
    assert np.array_equal(x.reshape(2, -1), images)


def test_cifar_batch_refuses_code_and_bad_content(tmp_path):
    marker = tmp_path / "pwned"
    evil = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    with pytest.raises(DataError, match=r"evil: not a readable .*refusing to load os\.system"):
        read_cifar_batch(write(tmp_path / "evil", evil))
    assert not marker.exists()
    wrong = pickle.dumps({b"data": np.zeros((1, 100), np.uint8), b"labels": [1]}, protocol=2)
    with pytest.raises(DataError, match=r"expected uint8 \[N, 3072\]"):
        read_cifar_batch(write(tmp_path / "w", wrong))
    labels = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}, protocol=2)
    with pytest.raises(DataError, match="labels must be 0-9"):
        read_cifar_batch(write(tmp_path / "l", labels))


def _write_idx_set(folder, n_train=12, n_test=5, gz=False):
    sfx = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        imgs = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lbls = (np.arange(n) % 10).astype(np.uint8)
        for name, arr in (
            (f"{split}-images-idx3-ubyte", imgs),
            (f"{split}-labels-idx1-ubyte", lbls),
        ):
            blob = idx_bytes(arr)
            write(folder / (name + sfx), gzip.compress(blob) if gz else blob)


@pytest.mark.parametrize(
    ("name", "folder", "gz"),
    [("mnist", "mnist", False), ("fashion-mnist", "FashionMNIST/raw", True)],
)
def test_idx_datasets_load_from_the_data_root(tmp_path, name, folder, gz):
    _write_idx_set(tmp_path / folder, gz=gz)
    train, test = data.load(name, "train", root=tmp_path), data.load(name, "test", root=tmp_path)
    assert len(train) == 12 and len(test) == 5
    x, y = train[3]
    assert x.shape == data.info(name).input_shape and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and int(y) == 3
    row = {r["name"]: r for r in data.catalog(tmp_path)}[name]
    assert row["found"] and row["where"] == str(tmp_path / folder)


def test_cifar10_dataset_loads_from_the_data_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write(
            folder / name,
            cifar_batch_bytes(RNG.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8), [1, 2, 3]),
        )
    train, test = (
        data.load("cifar10", "train", root=tmp_path),
        data.load("cifar10", "test", root=tmp_path),
    )
    assert len(train) == 15 and len(test) == 3
    assert train[0][0].shape == (3, 32, 32)


def test_missing_files_say_what_goes_where(tmp_path):
    with pytest.raises(
        DataError, match=rf"Put them here: {tmp_path}/mnist/  train-images-idx3-ubyte"
    ):
        data.load("mnist", root=tmp_path)
    _write_idx_set(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte \(raw or .gz\) not found in"):
        data.load("mnist", "test", root=tmp_path)
    assert len(data.load("mnist", "train", root=tmp_path)) == 12
    with pytest.raises(DataError, match=rf"Put them here: {tmp_path}/cifar-10-batches-py/"):
        data.load("cifar10", root=tmp_path)


FUZZ = settings(
    max_examples=examples(120),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("static-fuzz")


def _try(reader, path):
    try:
        return reader(path)
    except DataError as exc:
        assert path.name in str(exc)
        return None


@FUZZ
@given(
    body=st.binary(max_size=300),
    head=st.sampled_from([b"", b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x1f\x8b", b"\x80\x02"]),
)
def test_random_bytes_are_clear_errors(fuzz_dir, body, head):
    path = fuzz_dir / "random-file"
    path.write_bytes(head + body)
    out = _try(read_idx, path)
    if out is not None:
        assert out.size * out.itemsize <= len(body)
    out = _try(read_cifar_batch, path)
    if out is not None:
        assert out[0].shape[1:] == (3, 32, 32)


@FUZZ
@given(
    kind=st.sampled_from(["idx", "idx.gz", "cifar"]),
    where=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
    truncate=st.booleans(),
)
def test_damaged_files_fail_or_stay_well_formed(fuzz_dir, kind, where, bit, truncate):
    images = np.random.default_rng(1).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    if kind == "cifar":
        blob, reader = cifar_batch_bytes(images, [1, 2, 3]), read_cifar_batch
    else:
        blob = idx_bytes(images.reshape(3, 3, 1024))
        blob, reader = (gzip.compress(blob) if kind == "idx.gz" else blob), read_idx
    data_ = bytearray(blob)
    pos = int(where * len(data_))
    if truncate:
        data_ = data_[:pos]
    else:
        data_[pos] ^= 1 << bit
    path = fuzz_dir / f"damaged-{kind}"
    path.write_bytes(bytes(data_))
    out = _try(reader, path)
    if out is not None:
        if kind == "cifar":
            x, y = out
            assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32) and len(x) == len(y)
            assert ((0 <= y) & (y <= 9)).all()
        else:
            assert not truncate or pos == len(blob)
            assert out.size <= images.size


# -- files that declare more than they hold ----------------------------------------------------


def _gz_of_zeros_after(head: bytes, n_zeros: int) -> bytes:
    """gzip of ``head`` followed by ``n_zeros`` zero bytes, compressed piece by piece."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(head)
        block = bytes(1 << 20)
        for start in range(0, n_zeros, len(block)):
            gz.write(block[: min(len(block), n_zeros - start)])
    return buf.getvalue()


def _peak_mb(fn) -> float:
    """Peak traced memory (MB, numpy arrays included) while ``fn()`` runs."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 1e6


def test_idx_gz_header_beyond_what_the_file_can_hold_is_refused_before_inflating(tmp_path):
    head = bytes([0, 0, 0x08, 3]) + np.array([1_000_000, 28, 28], ">u4").tobytes()
    path = write(tmp_path / "big.gz", _gz_of_zeros_after(head, 1000))
    with pytest.raises(DataError, match=r"declares 784000000 bytes of data, more than this"):
        read_idx(path)
    huge = bytes([0, 0, 0x0E, 2]) + np.array([1 << 16, 1 << 16], ">u4").tobytes()
    with pytest.raises(DataError, match=r"declares 34359738368 bytes .*at most 2147483648"):
        read_idx(write(tmp_path / "huge", huge + bytes(64)))


def test_idx_gz_with_50_mb_after_its_data_stops_inflating_after_one_byte(tmp_path):
    head = bytes([0, 0, 0x08, 3]) + np.array([2, 28, 28], ">u4").tobytes() + bytes(1568)
    path = write(tmp_path / "tail.gz", _gz_of_zeros_after(head, 50 << 20))
    assert path.stat().st_size < 200_000

    def read():
        with pytest.raises(DataError, match=r"unexpected byte\(s\) after the data, from byte"):
            read_idx(path)

    assert _peak_mb(read) < 10  # gzip.decompress held all 50 MB


class _Alloc:
    """Pickles as ``numpy.ndarray(shape, "u1")``: an array allocated from a declared shape."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __reduce__(self):
        return (np.ndarray, (self.shape, "u1"))


class _Reconstruct:
    """Pickles as numpy's ``_reconstruct(ndarray, shape, "B")`` with a large shape."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __reduce__(self):
        from numpy.core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, self.shape, b"B"))


@pytest.mark.parametrize("maker", [_Alloc, _Reconstruct], ids=["ndarray", "_reconstruct"])
def test_cifar_batch_cannot_allocate_arrays_from_declared_shapes(tmp_path, maker):
    blob = pickle.dumps({b"data": maker((500_000, 3072)), b"labels": maker((500_000,))}, 2)
    assert len(blob) < 300
    path = write(tmp_path / "data_batch_1", blob)

    def read():
        with pytest.raises(DataError, match="not a readable CIFAR-10 python batch"):
            read_cifar_batch(path)

    assert _peak_mb(read) < 10  # 500,000 images are 1.5 GB


def test_fashion_mnist_is_found_in_the_system_dataset_folder_after_the_data_root(
    tmp_path, monkeypatch
):
    from spikeweave.data import layouts

    system = tmp_path / "system"
    _write_idx_set(system / "fashion-mnist", gz=True)
    monkeypatch.setattr(layouts, "SYSTEM_DATA", system)
    root = tmp_path / "root"
    train = data.load("fashion-mnist", "train", root=root)
    assert len(train) == 12
    row = {r["name"]: r for r in data.catalog(root)}["fashion-mnist"]
    assert row["found"] and row["where"] == str(system / "fashion-mnist")
    _write_idx_set(root / "fashion-mnist", gz=False)  # the user's own files win
    row = {r["name"]: r for r in data.catalog(root)}["fashion-mnist"]
    assert row["where"] == str(root / "fashion-mnist")


def test_a_missing_fashion_mnist_names_the_system_package(tmp_path):
    with pytest.raises(DataError) as excinfo:
        data.load("fashion-mnist", "train", root=tmp_path)
    msg = str(excinfo.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "\n" not in msg


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is missing (apt-get install dataset-fashion-mnist)",
)
def test_the_real_fashion_mnist_reads_60000_and_10000_images(monkeypatch, tmp_path):
    from spikeweave.data import layouts

    monkeypatch.setattr(layouts, "SYSTEM_DATA", Path("/usr/share/datasets"))
    train = data.load("fashion-mnist", "train", root=tmp_path)
    test = data.load("fashion-mnist", "test", root=tmp_path)
    assert (len(train), len(test)) == (60000, 10000)
    x, y = test[0]
    assert x.shape == (1, 28, 28) and 0 <= int(y) <= 9
