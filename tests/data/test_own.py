"""Your own data (spikeweave.data.own): image folders and .npz files as datasets, read as
untrusted files; through the API and through `spikeweave train --dataset PATH` / `eval`."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import run_main
from PIL import Image

from spikeweave import data
from spikeweave.data import own
from spikeweave.errors import ConfigError, DataError


def tiny_arrays(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 6x6 uint8 images of two classes (bright top half vs bright bottom half)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = (rng.random((n, 6, 6)) * 50).astype(np.uint8)
    x[y == 0, :3] += 180
    x[y == 1, 3:] += 180
    return x, y


def write_folder(root: Path, x: np.ndarray, y: np.ndarray, names=("down", "up")) -> Path:
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        d = root / names[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- .npz -------------------------------------------------------------------------------------


def test_an_npz_without_a_test_split_holds_out_a_seeded_fifth_of_each_class(tmp_path):
    x, y = tiny_arrays(40)
    np.savez(tmp_path / "d.npz", x=x, y=y, classes=np.array(["top", "bottom"]))
    d = own.read(tmp_path / "d.npz")
    assert (len(d.y_train), len(d.y_test)) == (32, 8)
    assert np.bincount(d.y_test).tolist() == [4, 4]
    assert d.classes == ("top", "bottom") and d.input_shape == (1, 6, 6)
    assert not d.test_given
    train, test = own.hold_out(y, tmp_path)
    assert sorted([*train, *test]) == list(range(40))
    assert np.array_equal(x[test][:, None], d.x_test)  # the same split every time
    ds = data.load(str(tmp_path / "d.npz"), "test")
    xi, yi = ds[0]
    assert xi.dtype == torch.float32 and torch.equal(xi, torch.from_numpy(x[test[0]][None]) / 255)
    assert int(yi) == y[test[0]]


def test_an_npz_with_x_test_and_float_images_keeps_its_split_and_values(tmp_path):
    x, y = tiny_arrays(20)
    xf = (x / 255.0).astype(np.float64)[:, None]
    np.savez(tmp_path / "f.npz", x=xf[:12], y=y[:12], x_test=xf[12:], y_test=y[12:])
    d = own.read(tmp_path / "f.npz")
    assert d.test_given and len(d.y_test) == 8 and d.x_train.dtype == np.float32
    assert d.classes == ("0", "1")
    x0, _ = data.load(str(tmp_path / "f.npz"), "test")[0]
    assert torch.allclose(x0, torch.from_numpy(xf[12]).float())


def test_a_path_dataset_reports_shape_classes_and_a_content_digest(tmp_path):
    x, y = tiny_arrays(20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    found = data.info(str(tmp_path / "d.npz"))
    assert found.kind == "own" and found.input_shape == (1, 6, 6) and found.num_classes == 2
    assert len(found.digest) == 64
    np.savez(tmp_path / "d.npz", x=255 - x, y=y)  # same size, other bytes
    with pytest.raises(DataError, match="changed since the run was trained"):
        data.load(str(tmp_path / "d.npz"), "train", digest=found.digest)
    with pytest.raises(ConfigError, match="root"):
        data.load(str(tmp_path / "d.npz"), "train", root=tmp_path)


def _npz_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _npy(shape: tuple[int, ...], dtype: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: {"x": np.array([object()] * 4, dtype=object), "y": np.zeros(4, int)}, "objects"),
        (lambda: {"x": np.zeros((5, 4, 4), np.uint8), "y": np.zeros(4, int)}, "5 samples but 4"),
        (lambda: {"x": np.zeros((4, 4, 4), np.int32), "y": np.zeros(4, int)}, "uint8"),
        (lambda: {"x": np.full((4, 4, 4), 2.0), "y": np.zeros(4, int)}, r"\[0, 1\]"),
        (lambda: {"x": np.zeros((4, 4, 4), np.uint8), "y": -np.ones(4, int)}, "labels must"),
        (lambda: {"x": np.zeros((4, 4, 4), np.uint8), "y": np.zeros(4), "z": np.ones(1)}, "'z"),
        (lambda: {"x": np.zeros((4, 4, 4), np.uint8)}, "needs arrays"),
    ],
)
def test_a_bad_npz_is_refused_in_one_line(tmp_path, make, message):
    np.savez(tmp_path / "bad.npz", **make())
    with pytest.raises(DataError, match=message):
        own.read(tmp_path / "bad.npz")


def test_an_npz_member_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    big = _npy((100_000, 100_000, 100), "|u1", b"\0" * 16)
    (tmp_path / "bomb.npz").write_bytes(
        _npz_bytes({"x.npy": big, "y.npy": _npy((1,), "<i8", b"\0" * 8)})
    )
    with pytest.raises(DataError, match="more than"):
        own.read(tmp_path / "bomb.npz")
    small = _npy((4, 4, 4), "|u1", b"\0" * 16)  # declares 64 bytes, holds 16
    (tmp_path / "short.npz").write_bytes(_npz_bytes({"x.npy": small, "y.npy": small}))
    with pytest.raises(DataError, match="declares"):
        own.read(tmp_path / "short.npz")


def test_a_file_that_is_not_an_npz_is_refused(tmp_path):
    (tmp_path / "no.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not an .npz"):
        own.read(tmp_path / "no.npz")
    with pytest.raises(DataError, match="no such file or folder"):
        own.read(tmp_path / "missing.npz")


# -- image folders ----------------------------------------------------------------------------


def test_a_folder_of_class_folders_reads_sorted_classes_and_holds_out_a_test_share(tmp_path):
    x, y = tiny_arrays(20)
    root = write_folder(tmp_path / "imgs", x, y, names=("zeta", "alpha"))
    (root / "README.txt").write_text("skipped")
    d = own.read(root)
    assert d.classes == ("alpha", "zeta")  # sorted by name: "zeta" (label 0 above) is 1 now
    assert d.input_shape == (1, 6, 6) and (len(d.y_train), len(d.y_test)) == (16, 4)
    first_alpha = sorted((root / "alpha").iterdir())[0]
    assert np.array_equal(d.x_train[0, 0], np.asarray(Image.open(first_alpha)))


def test_a_train_test_pair_of_folders_gives_the_split_and_rgb_images_three_channels(tmp_path):
    x, y = tiny_arrays(12)
    rgb = np.repeat(x[..., None], 3, axis=-1)
    for split, idx in (("train", range(8)), ("test", range(8, 12))):
        for i in idx:
            d = tmp_path / "pair" / split / ("ab"[y[i]])
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb[i]).save(d / f"{i}.png")
    d = own.read(tmp_path / "pair")
    assert d.test_given and d.input_shape == (3, 6, 6)
    assert (len(d.y_train), len(d.y_test)) == (8, 4)


def test_an_image_of_another_size_is_refused_naming_the_file(tmp_path):
    x, y = tiny_arrays(6)
    root = write_folder(tmp_path / "imgs", x, y)
    Image.new("L", (7, 6)).save(root / "up" / "odd.png")
    with pytest.raises(DataError, match=r"odd\.png: 7x6 pixels.*same size"):
        own.read(root)


def test_a_link_that_leaves_the_folder_is_refused(tmp_path):
    x, y = tiny_arrays(6)
    root = write_folder(tmp_path / "imgs", x, y)
    Image.fromarray(x[0]).save(tmp_path / "outside.png")
    os.symlink(tmp_path / "outside.png", root / "up" / "link.png")
    with pytest.raises(DataError, match="outside the dataset folder"):
        own.read(root)


def test_hidden_entries_are_skipped_and_an_unlistable_class_folder_is_one_data_error(
    tmp_path, monkeypatch
):
    x, y = tiny_arrays(6)
    root = write_folder(tmp_path / "imgs", x, y)
    (root / ".cache").mkdir()  # a hidden folder is no class
    Image.fromarray(x[0]).save(root / "up" / ".thumb.png")  # nor a hidden file an image
    d = own.read(root)
    assert d.classes == ("down", "up") and len(d.y_train) + len(d.y_test) == 6
    scandir = os.scandir

    def refuse_up(path):
        if Path(path) == (root / "up").resolve():
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    monkeypatch.setattr(own.os, "scandir", refuse_up)
    with pytest.raises(DataError, match=r"imgs/up: cannot list \(Permission denied\)"):
        own.read(root)


def test_a_link_inside_the_folder_is_followed(tmp_path):
    x, y = tiny_arrays(6)
    root = write_folder(tmp_path / "imgs", x, y)
    os.symlink(root / "up" / "001.png", root / "up" / "again.png")
    assert len(own.read(root).y_train) + len(own.read(root).y_test) == 7


def test_a_corrupt_or_oversized_image_is_a_one_line_data_error(tmp_path, monkeypatch):
    x, y = tiny_arrays(6)
    root = write_folder(tmp_path / "imgs", x, y)
    (root / "up" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="not a readable image"):
        own.read(root)
    (root / "up" / "bad.png").unlink()
    monkeypatch.setattr(own, "MAX_IMAGE_PIXELS", 35)
    with pytest.raises(DataError, match="more than 35"):
        own.read(root)


# -- through the command line -----------------------------------------------------------------

TRAIN = ("--model", "ann-mlp", "--epochs", "1", "--batch-size", "8", "--no-progress",
         "--device", "cpu", "--no-plots")  # fmt: skip


def _train(dataset: Path, out: Path) -> Path:
    code, stdout, err = run_main("train", "--dataset", dataset, "--out-dir", out, *TRAIN)
    assert code == 0, err
    (run,) = out.iterdir()
    return run


def test_train_on_an_npz_records_the_path_and_eval_finds_the_data_again(
    tmp_path, monkeypatch, one_thread
):
    import json

    x, y = tiny_arrays(40)
    np.savez(tmp_path / "mine.npz", x=x, y=y, classes=np.array(["top", "bottom"]))
    monkeypatch.chdir(tmp_path)
    run = _train(Path("mine.npz"), tmp_path / "runs")  # a relative path, recorded absolute
    assert run.name.startswith("mine-ann-mlp-")
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == str((tmp_path / "mine.npz").resolve())
    assert config["class_names"] == ["top", "bottom"] and len(config["dataset_digest"]) == 64
    monkeypatch.chdir("/")
    code, stdout, err = run_main("eval", run, "--device", "cpu")
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['test_accuracy']:.2%}" in stdout

    np.savez(tmp_path / "mine.npz", x=255 - x, y=y)
    code, _, err = run_main("eval", run, "--device", "cpu")
    assert code == 2 and "changed since the run was trained" in one_error_line(err)
    (tmp_path / "mine.npz").unlink()
    code, _, err = run_main("eval", run, "--device", "cpu")
    assert code == 2 and "no such file or folder" in one_error_line(err)


def test_train_on_an_image_folder_then_eval_and_plot_need_no_dataset(tmp_path, one_thread):
    x, y = tiny_arrays(20)
    root = write_folder(tmp_path / "imgs", x, y)
    run = _train(root, tmp_path / "runs")
    assert run.name.startswith("imgs-ann-mlp-")
    code, _, err = run_main("eval", run, "--device", "cpu")
    assert code == 0, err
    code, _, err = run_main("plot", run)
    assert code == 0, err


def _pickled(p: Path) -> None:
    np.savez(p, x=np.array([object()] * 4, dtype=object), y=np.zeros(4, int))


def _mismatched(p: Path) -> None:
    np.savez(p, x=np.zeros((5, 4, 4), np.uint8), y=np.zeros(4, int))


def _huge(p: Path) -> None:
    p.write_bytes(_npz_bytes({"x.npy": _npy((10**6, 10**4, 10**2), "|u1", b"\0" * 8)}))


@pytest.mark.parametrize(
    ("write", "message"),
    [(_pickled, "objects"), (_mismatched, "5 samples but 4"), (_huge, "more than")],
)
def test_train_refuses_a_hostile_npz_in_one_line(tmp_path, write, message):
    write(tmp_path / "bad.npz")
    code, _, err = run_main(
        "train", "--dataset", tmp_path / "bad.npz", "--out-dir", tmp_path, *TRAIN
    )
    assert code == 2 and message in one_error_line(err)


def test_train_refuses_an_odd_image_and_a_link_out_of_the_folder_in_one_line(tmp_path):
    x, y = tiny_arrays(6)
    root = write_folder(tmp_path / "imgs", x, y)
    Image.new("L", (6, 5)).save(root / "up" / "odd.png")
    code, _, err = run_main("train", "--dataset", root, "--out-dir", tmp_path / "r", *TRAIN)
    assert code == 2 and "odd.png" in one_error_line(err)
    (root / "up" / "odd.png").unlink()
    os.symlink("/etc/hostname", root / "up" / "out.png")
    code, _, err = run_main("train", "--dataset", root, "--out-dir", tmp_path / "r", *TRAIN)
    assert code == 2 and "outside the dataset folder" in one_error_line(err)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_missing_path_or_a_data_root_with_a_path_is_refused_in_one_line(tmp_path):
    code, _, err = run_main("train", "--dataset", tmp_path / "nope.npz", *TRAIN)
    assert code == 2 and "no such file or folder" in one_error_line(err)
    x, y = tiny_arrays(10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code, _, err = run_main(
        "train", "--dataset", tmp_path / "d.npz", "--data-root", tmp_path, *TRAIN
    )
    assert code == 2 and "data_root does not apply" in one_error_line(err)
