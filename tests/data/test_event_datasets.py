"""Event datasets on disk: N-MNIST from the real shared samples, DVS128 Gesture and CIFAR10-DVS
from byte-exact written recordings, the catalog, training end to end, and Tonic interop."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from real_data import REAL, needs_real
from spikeweave_format_writers import (
    aedat2_bytes,
    aedat31_bytes,
    make_events,
    nmnist_bytes,
    random_events,
    read_labels_csv,
    write,
)

from spikeweave import data
from spikeweave.data.event_datasets import read_gesture_labels
from spikeweave.data.layouts import CIFAR10_CLASSES
from spikeweave.data.tonic_interop import TonicFrames, from_tonic_events
from spikeweave.errors import ConfigError, DataError

NMNIST_SMALL = REAL / "nmnist" / "slayerPytorch_NMNISTsmall"
GESTURE_LABELS = REAL / "dvsgesture_labels_only" / "user01_natural_labels.csv"

# events per shared N-MNIST sample (SOURCES.md)
NMNIST_COUNTS = {
    "1.bs2": 4681,
    "2.bs2": 5028,
    "3.bs2": 3307,
    "4.bs2": 2723,
    "5.bs2": 3913,
    "6.bs2": 4921,
    "8.bs2": 5520,
    "14.bs2": 4542,
    "16.bs2": 4138,
    "18.bs2": 4096,
}


def build_nmnist_root(
    root: Path, test_files: tuple[str, ...] = ("1.bs2", "2.bs2", "4.bs2")
) -> dict:
    """``root/nmnist/{Train,Test}/<digit>/<n>.bin`` from the shared ``.bs2`` samples."""
    labels = read_labels_csv(NMNIST_SMALL / "labels.csv")
    for name, label in labels.items():
        for split in ("Train",) + (("Test",) if name in test_files else ()):
            dest = root / "nmnist" / split / str(label) / (Path(name).stem + ".bin")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(NMNIST_SMALL / name, dest)
    return labels


@needs_real
def test_nmnist_dataset_from_real_samples(tmp_path):
    labels = build_nmnist_root(tmp_path)
    train = data.load("nmnist", "train", root=tmp_path)
    test = data.load("nmnist", "test", root=tmp_path)
    assert len(train) == 10 and len(test) == 3
    assert sorted(train.labels) == list(range(10))
    for i, sample in enumerate(train.samples):
        frames, label = train[i]
        assert label == labels[sample.path.stem + ".bs2"] == int(sample.path.parent.name)
        assert frames.shape == (10, 2, 34, 34) and frames.dtype == torch.float32
        assert int(frames.sum()) == NMNIST_COUNTS[sample.path.stem + ".bs2"]  # nothing dropped
    frames, _ = data.load("nmnist", "train", root=tmp_path, frames=4, spatial_factor=2)[0]
    assert frames.shape == (4, 2, 17, 17)
    assert data.info("nmnist").input_shape == (2, 34, 34) and data.info("nmnist").temporal


@pytest.mark.slow
@needs_real
def test_trainer_runs_one_epoch_on_real_nmnist(tmp_path, monkeypatch):
    from spikeweave.training import TrainConfig, Trainer

    monkeypatch.setenv("SPIKEWEAVE_CACHE", str(tmp_path / "cache"))
    build_nmnist_root(tmp_path / "data")
    cfg = TrainConfig(
        dataset="nmnist",
        data_root=str(tmp_path / "data"),
        model="mlp",
        epochs=1,
        steps=10,
        batch_size=4,
        out_dir=str(tmp_path / "runs"),
    )
    summary = Trainer(cfg, progress=False).fit()
    assert summary["epochs"] == 1
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert any((tmp_path / "cache" / "frames").rglob("*.npy"))


@pytest.mark.slow
@needs_real
def test_cli_trains_nmnist_and_lists_datasets(tmp_path):
    testing = pytest.importorskip("typer.testing")
    from spikeweave.cli import app

    build_nmnist_root(tmp_path / "data")
    runner = testing.CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "nmnist",
            "--data-root",
            str(tmp_path / "data"),
            "--model",
            "mlp",
            "--epochs",
            "1",
            "--batch-size",
            "5",
            "--out-dir",
            str(tmp_path / "runs"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    result = runner.invoke(app, ["data", "list", "--data-root", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "nmnist" in result.output and "dvs-gesture" in result.output


def test_nmnist_missing_split_and_files(tmp_path):
    with pytest.raises(DataError, match=r"Put them here: .*/nmnist/  Train/<digit 0-9>/\*\.bin"):
        data.load("nmnist", root=tmp_path)
    (tmp_path / "nmnist" / "Train" / "3").mkdir(parents=True)
    with pytest.raises(
        DataError, match=r"no Test folder in .*put the test samples in .*Test/<digit>"
    ):
        data.load("nmnist", "test", root=tmp_path)
    with pytest.raises(DataError, match=r"no \.bin files in .*Train/<digit 0-9>/"):
        data.load("nmnist", "train", root=tmp_path)
    with pytest.raises(ConfigError, match="unknown option"):
        data.load("nmnist", root=tmp_path, steps=3)
    with pytest.raises(ConfigError, match="embedded and takes no options"):
        data.load("digits", frames=3)


# -- DVS128 Gesture ---------------------------------------------------------------------------


def _gesture_recording(rows, rng, per_gesture=40):
    """Events inside each labelled window (one exactly at start, none at end) and between them."""
    parts, inside = [], []
    for _, start, end in rows:
        t = np.concatenate([[start], rng.integers(start, end, per_gesture - 1)])
        parts.append(
            make_events(
                t,
                rng.integers(0, 128, per_gesture),
                rng.integers(0, 128, per_gesture),
                rng.integers(0, 2, per_gesture),
            )
        )
        parts.append(make_events([end, end + 1], [5, 6], [7, 8], [1, 0]))  # outside [start, end)
        inside.append(per_gesture)
    ev = np.concatenate(parts)
    return ev[np.argsort(ev["t"], kind="stable")], inside


def build_gesture_root(root: Path, labels_csv: Path, rng) -> tuple[list, list]:
    folder = root / "DvsGesture"
    rows = read_gesture_labels(labels_csv)
    ev, inside = _gesture_recording(rows, rng)
    write(folder / "user01_natural.aedat", aedat31_bytes(ev, packet_size=128))
    shutil.copyfile(labels_csv, folder / "user01_natural_labels.csv")
    test_rows = [(0, 1_000, 50_000), (10, 60_000, 90_000)]
    ev2, _ = _gesture_recording(test_rows, rng, per_gesture=25)
    write(folder / "user02_led.aedat", aedat31_bytes(ev2))
    write(
        folder / "user02_led_labels.csv",
        b"class,startTime_usec,endTime_usec\r\n1,1000,50000\r\n11,60000,90000\r\n",
    )
    write(folder / "trials_to_train.txt", b"user01_natural.aedat\n")
    write(folder / "trials_to_test.txt", b"user02_led.aedat\n\n")
    return rows, inside


@needs_real
def test_dvs_gesture_cuts_recordings_by_the_real_label_file(tmp_path):
    rows = read_gesture_labels(GESTURE_LABELS)
    assert len(rows) == 12 and {r[0] for r in rows} == set(range(11))
    assert rows[0][1] == 53_036_986 and max(r[2] for r in rows) == 177_991_967
    rows, inside = build_gesture_root(tmp_path, GESTURE_LABELS, np.random.default_rng(3))
    train = data.load("dvs-gesture", "train", root=tmp_path, frames=5)
    test = data.load("dvs-gesture", "test", root=tmp_path)
    assert len(train) == 12 and len(test) == 2
    for i, (label, _, _) in enumerate(rows):
        frames, y = train[i]
        assert y == label and frames.shape == (5, 2, 128, 128)
        assert int(frames.sum()) == inside[i]
    frames, y = test[1]
    assert y == 10 and frames.shape == (16, 2, 128, 128) and int(frames.sum()) == 25
    assert {r["name"]: r for r in data.catalog(tmp_path)}["dvs-gesture"]["found"]
    # windows are sliced with the denoise look-back: same frames as filtering the whole recording
    kw = dict(n_frames=5, denoise_us=3_000_000)
    den = data.load(
        "dvs-gesture",
        "train",
        root=tmp_path,
        cache=False,
        transform=data.ToFrames((128, 128), **kw),
    )
    full = data.read_events(tmp_path / "DvsGesture" / "user01_natural.aedat")
    kept = 0
    for i, (_, start, end) in enumerate(rows):
        expected = data.ToFrames((128, 128), **kw)(full, start, end - 1)
        assert np.array_equal(den[i][0].numpy(), expected)
        kept += expected.sum()
    assert 0 < kept < sum(inside)


def test_dvs_gesture_missing_pieces(tmp_path):
    with pytest.raises(DataError, match=r"Put them here: .*DvsGesture/  user\*_\*\.aedat"):
        data.load("dvs-gesture", root=tmp_path)
    folder = tmp_path / "DvsGesture"
    write(folder / "trials_to_train.txt", b"user05_lab.aedat\n")
    with pytest.raises(DataError, match="trials_to_test.txt is missing"):
        data.load("dvs-gesture", "test", root=tmp_path)
    with pytest.raises(DataError, match="not in .*user05_lab.aedat"):
        data.load("dvs-gesture", "train", root=tmp_path)
    write(folder / "user05_lab.aedat", aedat31_bytes(make_events([1], [1], [1], [1])))
    with pytest.raises(DataError, match="user05_lab_labels.csv: label file missing"):
        data.load("dvs-gesture", "train", root=tmp_path)
    write(folder / "user05_lab_labels.csv", b"class,startTime_usec,endTime_usec\n12,0,10\n")
    with pytest.raises(DataError, match=r"line 2: class 12 is not 1-11"):
        data.load("dvs-gesture", "train", root=tmp_path)


# -- CIFAR10-DVS ------------------------------------------------------------------------------


def test_cifar10_dvs_split_labels_and_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEWEAVE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(4)
    counts = {}
    for cls in CIFAR10_CLASSES:
        for i in range(10):
            n = int(rng.integers(5, 60))
            ev = random_events(rng, n, 128, 128, 1_200_000)
            write(tmp_path / "cifar10-dvs" / cls / f"cifar10_{cls}_{i}.aedat", aedat2_bytes(ev))
            counts[(cls, i)] = n
    train = data.load("cifar10-dvs", "train", root=tmp_path)
    test = data.load("cifar10-dvs", "test", root=tmp_path, frames=3, cache=False)
    assert len(train) == 90 and len(test) == 10
    assert sorted(test.labels) == list(range(10))
    for ds in (train, test):
        for i in range(0, len(ds), 7):
            frames, y = ds[i]
            path = ds.samples[i].path
            assert CIFAR10_CLASSES[y] == path.parent.name
            assert int(frames.sum()) == counts[(path.parent.name, int(path.stem.split("_")[-1]))]
    assert all(s.path.stem.endswith("_9") for s in test.samples)  # numeric order: last 10 %
    # only the train set caches (test has cache=False): one entry per sample read
    assert len(list((tmp_path / "cache" / "frames").rglob("*.npy"))) == len(range(0, 90, 7))


def test_cifar10_dvs_missing_class_folder(tmp_path):
    (tmp_path / "cifar10-dvs" / "airplane").mkdir(parents=True)
    with pytest.raises(DataError, match="class folder\\(s\\) automobile, bird"):
        data.load("cifar10-dvs", root=tmp_path)


def test_catalog_reports_every_dataset(tmp_path, monkeypatch):
    rows = {r["name"]: r for r in data.catalog(tmp_path)}
    assert set(rows) == set(data.DATASETS)
    assert rows["digits"]["found"] and rows["digits"]["kind"] == "embedded"
    for name in ("mnist", "fashion-mnist", "cifar10", "nmnist", "dvs-gesture", "cifar10-dvs"):
        assert not rows[name]["found"] and str(tmp_path) in rows[name]["where"]
    assert rows["nmnist"]["kind"] == "events" and rows["mnist"]["kind"] == "images"
    monkeypatch.setenv("SPIKEWEAVE_DATA", str(tmp_path / "elsewhere"))
    assert data.default_root() == tmp_path / "elsewhere"
    assert str(tmp_path / "elsewhere") in {r["name"]: r for r in data.catalog()}["mnist"]["where"]


# -- Tonic interop ----------------------------------------------------------------------------


class FakeTonicDataset:
    """What a Tonic dataset looks like: sensor_size (W, H, P), items (events, target)."""

    sensor_size = (34, 34, 2)
    dtype = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<f8"), ("p", "<i8")])

    def __init__(self):
        rng = np.random.default_rng(5)
        self.items = []
        for target in range(3):
            ev = np.zeros(50, dtype=self.dtype)
            ev["x"], ev["y"] = rng.integers(0, 34, 50), rng.integers(0, 34, 50)
            ev["t"] = np.sort(rng.uniform(0, 300_000, 50))
            ev["p"] = rng.integers(0, 2, 50)
            self.items.append((ev, target))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_tonic_dataset_as_a_source():
    source = FakeTonicDataset()
    ds = TonicFrames(source, frames=6)
    assert len(ds) == 3
    frames, y = ds[2]
    assert y == 2 and frames.shape == (6, 2, 34, 34) and int(frames.sum()) == 50
    ev = from_tonic_events(source[2][0])
    assert ev.dtype == data.EVENT_DTYPE
    assert np.array_equal(frames.numpy(), data.to_frames(ev, (34, 34), n_frames=6))
    bad = np.zeros(3, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8")])
    with pytest.raises(DataError, match="lack field"):
        from_tonic_events(bad)


@pytest.mark.parametrize("how", ["dot-dot", "absolute", "symlink out"])
def test_dvs_gesture_listing_cannot_reach_outside_the_dataset_folder(tmp_path, how):
    folder = tmp_path / "DvsGesture"
    secret = tmp_path / "secret.aedat"  # a readable recording outside the dataset folder
    write(secret, aedat31_bytes(make_events([1], [1], [1], [1])))
    write(tmp_path / "secret_labels.csv", b"class,startTime_usec,endTime_usec\n1,0,10\n")
    entry = {"dot-dot": "../secret.aedat", "absolute": str(secret), "symlink out": "in.aedat"}
    if how == "symlink out":
        folder.mkdir()
        (folder / "in.aedat").symlink_to(secret)
        (folder / "in_labels.csv").symlink_to(tmp_path / "secret_labels.csv")
    write(folder / "trials_to_train.txt", entry[how].encode() + b"\n")
    write(folder / "trials_to_test.txt", entry[how].encode() + b"\n")
    with pytest.raises(DataError, match="which is outside"):
        data.load("dvs-gesture", "train", root=tmp_path)


def test_one_recording_is_binned_for_inference_as_the_dataset_bins_its_samples(tmp_path):
    from spikeweave.data.event_datasets import recording_frames

    events = random_events(np.random.default_rng(3), 400, 34, 34, 50_000)
    folder = tmp_path / "nmnist" / "Train" / "4"
    folder.mkdir(parents=True)
    (folder / "00001.bin").write_bytes(nmnist_bytes(events))
    sample, label = data.load("nmnist", "train", root=tmp_path, frames=5, cache=False)[0]
    frames = recording_frames("nmnist", folder / "00001.bin", 5)
    assert label == 4 and frames.shape == (5, 2, 34, 34)
    assert torch.equal(torch.from_numpy(frames), sample)
    with pytest.raises(ConfigError, match="not an event dataset"):
        recording_frames("mnist", folder / "00001.bin", 5)
