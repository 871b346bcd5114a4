"""report.json's per-image record: bit-packed, round-trips, and is checked when read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikeweave.errors import DataError
from spikeweave.experiments.report import (
    PER_IMAGE_FORMAT,
    Report,
    load_per_image,
    merge_parts,
    pack_per_image,
)
from spikeweave.experiments.stats import accuracy_part


def test_per_image_record_round_trips_through_report_json(tmp_path):
    rng = np.random.default_rng(0)
    arms = {"lif": list(rng.random((3, 1001)) < 0.9), "klif": list(rng.random((3, 1001)) < 0.8)}
    part = accuracy_part("acc", arms["klif"], arms["lif"], margin=1.0)
    Report("x", "X", "c", {"seeds": [0, 1, 2]}, parts=[part], per_image=arms).write(tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["per_image"]["format"] == PER_IMAGE_FORMAT
    assert data["per_image"]["arms"]["lif"]["shape"] == [3, 1001]
    assert data["per_image"]["arms"]["lif"]["seeds"] == [0, 1, 2]
    assert "order" in data["per_image"]
    # 3 × 1001 bits packed: far smaller than a JSON list of booleans
    assert len(data["per_image"]["arms"]["lif"]["bits"]) < 3 * 1001 / 5
    back = load_per_image(tmp_path)
    for arm, rows in arms.items():
        np.testing.assert_array_equal(back[arm], np.asarray(rows))
    assert {"margin", "mde", "n_test", "seeds_needed"} <= set(data["parts"][0])
    assert data["parts"][0]["n_test"] == 1001 and data["parts"][0]["margin"] == 1.0
    loaded = Report.load(tmp_path)
    assert loaded.parts == [part]
    np.testing.assert_array_equal(np.asarray(loaded.per_image["klif"]), np.asarray(arms["klif"]))


def test_a_report_without_per_image_arms_still_writes_the_key(tmp_path):
    Report("x", "X", "c", {}).write(tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["per_image"]["arms"] == {}
    assert load_per_image(tmp_path) == {}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r["arms"]["a"].update(shape=[2, 9]),  # more bits than stored
        lambda r: r["arms"]["a"].update(shape=[2]),
        lambda r: r["arms"]["a"].update(shape=[-1, 8]),
        lambda r: r["arms"]["a"].update(shape=[1 << 20, 1 << 20]),  # over the size limit
        lambda r: r["arms"]["a"].update(bits="!!!!"),
        lambda r: r.update(format="json-list"),
    ],
)
def test_a_malformed_per_image_record_is_a_data_error(mutate):
    record = pack_per_image({"a": [[True] * 8, [False] * 8]})
    mutate(record)
    with pytest.raises(DataError):
        load_per_image({"per_image": record})


def test_merged_parts_keep_each_arms_per_image_under_its_tag():
    class E:
        name, title, claim = "e", "E", "c"

    part = {"setup": {}, "tables": [], "figures": [], "verdict": "", "parts": [], "results": {}}
    runs = [
        {**part, "tag": "digits", "per_image": {"a": [[True]]}},
        {**part, "tag": "mnist", "per_image": {"a": [[False]]}},
    ]
    merged = merge_parts(E, runs, None)
    assert set(merged.per_image) == {"[digits] a", "[mnist] a"}
