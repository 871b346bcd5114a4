"""Commands that write files: never through a link, and a bad output path is one line
``error: ...`` with exit status 2, no traceback, and nothing outside the target changed."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_main

from spikeweave import atomic
from spikeweave.compression.files import write_nmnist
from spikeweave.data.events import EVENT_DTYPE

TINY = ["--dataset", "digits", "--model", "mlp", "-T", "2", "--batch-size", "64", "--no-progress"]
LONG = "n" * 300  # longer than any file system's NAME_MAX


def assert_one_line_error(code: int, err: str, match: str = "") -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert re.search(match, lines[0]), lines[0]


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: a file's bytes, a link's target, ``"dir"`` for a folder."""
    seen: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            seen[key] = "-> " + os.readlink(path)
        elif path.is_dir():
            seen[key] = "dir"
        else:
            seen[key] = path.read_bytes()
    return seen


def sentinel(folder: Path) -> Path:
    path = folder / "precious.txt"
    path.write_bytes(b"do not touch")
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """One trained run, its NIR export, an event recording and its .sfev (made once)."""
    root = tmp_path_factory.mktemp("made")
    code, out, err = run_main("train", *TINY, "--epochs", "1", "--out-dir", root / "runs")
    assert code == 0, err
    run = Path(out.strip().splitlines()[-1].removeprefix("run written to "))
    code, _, err = run_main("export", run, root / "model.nir", "--dt", "0.001")
    assert code == 0, err
    rng = np.random.default_rng(0)
    ev = np.zeros(500, dtype=EVENT_DTYPE)
    ev["t"] = 1000 + rng.integers(1, 100, 500).cumsum()
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 34, 500), rng.integers(0, 34, 500), 1
    write_nmnist(root / "rec.bin", ev)
    code, _, err = run_main("compress", root / "rec.bin", root / "rec.sfev")
    assert code == 0, err
    return {
        "run": run,
        "nir": root / "model.nir",
        "rec": root / "rec.bin",
        "sfev": root / "rec.sfev",
    }


def copy_run(run: Path, dest: Path) -> Path:
    dest.mkdir()
    for path in run.iterdir():
        if path.is_file() and not path.name.startswith("."):
            (dest / path.name).write_bytes(path.read_bytes())
    return dest


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every atomic write fails as a full disk does (delayed allocation reports at fsync)."""

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", no_space)


# ------------------------------------------------------------------------- links in a run


@pytest.mark.slow
def test_plot_replaces_links_named_like_plots_and_leaves_their_targets_unchanged(made, tmp_path):
    run = copy_run(made["run"], tmp_path / "run")
    precious = sentinel(tmp_path)
    for name in ("training_curves.png", "spike_raster.png", "firing_rates.png"):
        (run / name).unlink()
        (run / name).symlink_to(precious)
    code, out, err = run_main("plot", run)
    assert code == 0, err
    assert precious.read_bytes() == b"do not touch"
    assert not (run / "training_curves.png").is_symlink()
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("command", [["plot"], ["eval"], ["train", "--epochs", "2", "--resume"]])
def test_a_run_directory_that_is_a_link_is_refused_by_commands_that_write_into_it(
    made, tmp_path, command
):
    run = copy_run(made["run"], tmp_path / "elsewhere")
    (tmp_path / "link").symlink_to(run)
    before = snapshot(tmp_path)
    code, _, err = run_main(*command, tmp_path / "link")
    assert_one_line_error(code, err, "is a symbolic link")
    assert snapshot(tmp_path) == before


def test_resume_refuses_a_lock_link_and_leaves_its_target_unchanged(made, tmp_path):
    run = copy_run(made["run"], tmp_path / "run")
    precious = sentinel(tmp_path)
    (run / ".lock").symlink_to(precious)
    before = snapshot(tmp_path)
    code, _, err = run_main("train", "--resume", run, "--epochs", "2", "--no-progress")
    assert_one_line_error(code, err, r"\.lock is a symbolic link, not a lock file; remove it")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir])
def test_resume_with_a_fifo_or_folder_at_the_lock_is_a_one_line_error(made, tmp_path, make):
    run = copy_run(made["run"], tmp_path / "run")
    make(run / ".lock")
    code, _, err = run_main("train", "--resume", run, "--epochs", "2", "--no-progress")
    assert_one_line_error(code, err, r"\.lock is ")


@pytest.mark.slow
def test_resume_replaces_links_named_like_run_files_and_leaves_their_targets_unchanged(
    made, tmp_path
):
    run = copy_run(made["run"], tmp_path / "run")
    precious = sentinel(tmp_path)
    linked = ("summary.json", "training_curves.png", "firing_rates.png", "activity.safetensors")
    for name in linked:
        (run / name).unlink()
        (run / name).symlink_to(precious)
    code, _, err = run_main("train", "--resume", run, "--epochs", "2", "--no-progress")
    assert code == 0, err
    assert precious.read_bytes() == b"do not touch"
    assert not any((run / name).is_symlink() for name in linked)


# ---------------------------------------------------------------------- bad output paths

# Each case: (name, how to make the output path from tmp_path, what the error line says).
PATHS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("missing-folder", lambda t: t / "missing" / "out.EXT", "its folder does not exist"),
    ("below-a-file", lambda t: t / "file" / "out.EXT", "a file is in the way"),
    ("a-folder", lambda t: t / "folder.EXT", "it is a folder"),
    ("proc", lambda t: Path("/proc/spikeweave-test.EXT"), "cannot write /proc/"),
    ("too-long", lambda t: t / f"{LONG}.EXT", "file name too long"),
    ("full-disk", lambda t: t / "out.EXT", "no space left on device"),
]


def prepare(tmp_path: Path, case: str, make: Callable[[Path], Path], ext: str, monkeypatch):
    (tmp_path / "file").write_text("in the way")
    (tmp_path / "folder.EXT".replace("EXT", ext)).mkdir()
    sentinel(tmp_path)
    if case == "full-disk":
        full_disk(monkeypatch)
    return Path(str(make(tmp_path)).replace("EXT", ext))


@pytest.mark.parametrize(("case", "make", "reason"), PATHS, ids=[p[0] for p in PATHS])
@pytest.mark.parametrize(
    ("command", "ext"),
    [(["compress", "rec"], "sfev"), (["decompress", "sfev"], "npz"), (["export", "run"], "nir")],
)
def test_a_bad_output_file_is_a_one_line_error_and_changes_nothing(
    made, tmp_path, monkeypatch, case, make, reason, command, ext
):
    out = prepare(tmp_path, case, make, ext, monkeypatch)
    before = snapshot(tmp_path)
    extra = ["--dt", "0.001"] if command[0] == "export" else []
    code, _, err = run_main(command[0], made[command[1]], out, *extra)
    assert_one_line_error(code, err, reason)
    assert snapshot(tmp_path) == before


FOLDERS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("a-file", lambda t: t / "file", "a file is in the way|is a file; pass a folder"),
    (
        "below-a-file",
        lambda t: t / "file" / "out",
        "a file is in the way|is a file; pass a folder",
    ),
    ("proc", lambda t: Path("/proc/spikeweave-test/out"), "/proc/spikeweave-test"),
    ("too-long", lambda t: t / LONG, "file name too long"),
    ("full-disk", lambda t: t / "out", "no space left on device"),
]


@pytest.mark.parametrize(("case", "make", "reason"), FOLDERS, ids=[p[0] for p in FOLDERS])
@pytest.mark.parametrize("command", ["import", "attack", "train"])
def test_a_bad_output_folder_is_a_one_line_error_and_changes_nothing(
    made, tmp_path, monkeypatch, case, make, reason, command
):
    out = prepare(tmp_path, case, make, "x", monkeypatch)
    before = snapshot(tmp_path)
    if command == "import":
        args = ["import", made["nir"], out]
    elif command == "attack":
        args = ["attack", made["run"], "--attack", "fgsm", "--eps", "0.1", "--samples", "8"]
        args += ["--out-dir", out]
    else:
        args = ["train", *TINY, "--epochs", "1", "--out-dir", out]
    code, _, err = run_main(*args)
    assert_one_line_error(code, err, reason)
    if case == "full-disk" and command in ("attack", "train"):
        (tmp_path / "out").rmdir()  # the folder asked for was made (empty) before the write
    assert snapshot(tmp_path) == before


def test_decompress_refuses_to_overwrite_its_own_input(made, tmp_path):
    same = tmp_path / "rec.npz"
    same.write_bytes(made["sfev"].read_bytes())
    code, _, err = run_main("decompress", same, same)
    assert_one_line_error(code, err, "the output would overwrite the input")
    assert same.read_bytes() == made["sfev"].read_bytes()


@pytest.mark.parametrize(
    ("command", "ext"), [(["compress", "rec"], "sfev"), (["decompress", "sfev"], "npz")]
)
def test_an_output_that_is_a_link_is_replaced_and_its_target_unchanged(
    made, tmp_path, command, ext
):
    precious = sentinel(tmp_path)
    out = tmp_path / f"out.{ext}"
    out.symlink_to(precious)
    code, _, err = run_main(command[0], made[command[1]], out)
    assert code == 0, err
    assert precious.read_bytes() == b"do not touch" and not out.is_symlink()
