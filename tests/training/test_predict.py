"""Inference on files (spikeweave.training.predict) and `spikeweave predict`: the same classes
and probabilities as Run.predict / Run.forward, images refused at the wrong size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import run_main
from PIL import Image

from spikeweave import load_run
from spikeweave.training.predict import format_predictions, read_inputs

TRAIN = ("--model", "ann-mlp", "--epochs", "1", "--batch-size", "8", "--no-progress",
         "--device", "cpu", "--no-plots")  # fmt: skip


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = (rng.random((n, 5, 7, 3)) * 255).astype(np.uint8)  # RGB, 7 wide, 5 high
    return x, y


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A run trained one epoch on an image folder with a train/ test/ pair; its test files in
    the dataset's order (class, then file name)."""
    root = tmp_path_factory.mktemp("own") / "pics"
    names = ("cat", "dog", "eel")
    tests = []
    for split, (x, y) in (("train", _images(18, 0)), ("test", _images(6, 1))):
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            d = root / split / names[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:02d}.png")
            if split == "test":
                tests.append(d / f"{i:02d}.png")
    out = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, _, err = run_main("train", "--dataset", root, "--out-dir", out, *TRAIN)
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    (run,) = out.iterdir()
    return run, sorted(tests, key=lambda p: (p.parent.name, p.name))


def test_predict_on_the_runs_test_images_gives_run_predict_classes_and_probabilities(folder_run):
    run_dir, files = folder_run
    code, stdout, err = run_main("predict", run_dir, *files, "--format", "json", "--device", "cpu")
    assert code == 0, err
    rows = json.loads(stdout)
    run = load_run(run_dir)
    x = torch.stack([run.dataset("test")[i][0] for i in range(len(files))])
    out = run.forward(x)
    assert [r["class"] for r in rows] == run.predict(x).tolist()
    expected = torch.softmax(out.mean(0), -1)  # an ANN: its one-step output is the logits
    got = torch.tensor([r["probabilities"] for r in rows])
    assert torch.allclose(got, expected, atol=1e-6)
    assert len(set(map(tuple, got.tolist()))) > 1  # the answers depend on the input
    assert [r["name"] for r in rows] == [["cat", "dog", "eel"][r["class"]] for r in rows]
    assert [r["input"] for r in rows] == [str(f) for f in files]


def test_predict_reads_an_npz_x_and_prints_an_aligned_table(folder_run, tmp_path):
    run_dir, files = folder_run
    x = np.stack([np.asarray(Image.open(f)).transpose(2, 0, 1) for f in files])
    np.savez(tmp_path / "batch.npz", x=x)
    code, stdout, err = run_main("predict", run_dir, tmp_path / "batch.npz", "--device", "cpu")
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["input", "class", "name", "p0", "p1", "p2"]
    assert len(lines) == 1 + len(files)
    column = lines[0].index("class")  # aligned: every class index starts under its header
    assert all(line[column].isdigit() and line[column - 1] == " " for line in lines[1:])
    code, js, _ = run_main("predict", run_dir, *files, "--format", "json", "--device", "cpu")
    by_file = [r["class"] for r in json.loads(js)]
    assert [int(line.split()[1]) for line in lines[1:]] == by_file
    assert lines[1].split()[0] == f"{tmp_path / 'batch.npz'}[0]"


def test_an_image_of_the_wrong_size_or_kind_is_refused_in_one_line(folder_run, tmp_path):
    run_dir, _ = folder_run
    Image.new("RGB", (8, 5)).save(tmp_path / "wide.png")
    code, _, err = run_main("predict", run_dir, tmp_path / "wide.png", "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and "8x5 pixels, but the run takes 7x5" in err
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run_main("predict", run_dir, tmp_path / "notes.txt", "--device", "cpu")
    assert code == 2 and err.startswith("error: ") and "not an image" in err
    code, _, err = run_main("predict", run_dir, tmp_path / "nope.png", "--device", "cpu")
    assert code == 2 and "no such file" in err
    code, _, err = run_main("predict", run_dir, tmp_path / "wide.png", "--format", "xml")
    assert code == 2 and "choose one of table, json" in err


def test_a_grey_image_is_repeated_over_an_rgb_runs_channels(folder_run, tmp_path):
    run_dir, _ = folder_run
    Image.new("L", (7, 5), color=90).save(tmp_path / "grey.png")
    names, x = read_inputs(load_run(run_dir), [tmp_path / "grey.png"])
    assert names == [str(tmp_path / "grey.png")] and x.shape == (1, 3, 5, 7)
    assert torch.allclose(x, torch.full_like(x, 90 / 255))


def test_the_table_shows_one_probability_when_there_are_many_classes():
    rows = [{"input": "a.png", "class": 11, "name": None, "probabilities": [0.0] * 11 + [1.0]}]
    header, line = format_predictions(rows, "table").splitlines()
    assert header.split() == ["input", "class", "name", "p"]
    assert line.split() == ["a.png", "11", "-", "1.000"]


def test_a_tie_for_the_top_output_is_flagged_not_passed_off_as_a_choice():
    rows = [
        {"input": "a", "class": 0, "name": None, "probabilities": [0.5, 0.5], "tied": True},
        {"input": "b", "class": 1, "name": None, "probabilities": [0.2, 0.8], "tied": False},
    ]
    table = format_predictions(rows).splitlines()
    assert table[1].split()[1] == "0*" and table[2].split()[1] == "1"
    assert table[-1].startswith("* tied")
    assert "tied" not in format_predictions(rows[1:])


def test_predict_records_say_whether_the_top_output_was_tied(folder_run):
    from spikeweave.training.predict import predict_files, predict_samples

    run_dir, files = folder_run
    rows = predict_files(run_dir, files)
    run = load_run(run_dir)
    _, probs = predict_samples(run, read_inputs(run, files)[1])
    for r, p in zip(rows, probs, strict=True):
        assert r["tied"] == bool((p == p.max()).sum() > 1)
