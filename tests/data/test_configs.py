"""The per-dataset paper configs in configs/ load as valid training configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikeweave import data
from spikeweave.training import TrainConfig
from spikeweave.training.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FILE_DATASETS = ["mnist", "fashion-mnist", "cifar10", "nmnist", "dvs-gesture", "cifar10-dvs"]


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_each_paper_dataset_has_a_valid_config(name):
    values = load_config(CONFIGS / f"{name}.toml")
    cfg = TrainConfig.from_dict(values, source=name).validate()
    assert cfg.dataset == name and name in data.DATASETS
    notes = cfg.notes
    assert notes["chosen_by_spikeweave"], "say which values are ours"
    methods = [v for k, v in notes.items() if isinstance(v, dict) and k != "binning"]
    assert methods and all("source" in m for m in methods)
    if data.info(name).temporal:
        assert notes["binning"]["frames"] == cfg.steps


@pytest.mark.parametrize(
    "path", sorted(CONFIGS.rglob("*.toml")), ids=lambda p: str(p.relative_to(CONFIGS))
)
def test_every_shipped_config_assembles_its_method_and_network(path, tmp_path):
    """What `spikeweave train --config FILE` checks before reading data: names against the
    registries, and no field the method would ignore (no dataset files needed)."""
    from spikeweave.training import assemble

    values = {**load_config(path), "out_dir": str(tmp_path)}
    cfg = TrainConfig.from_dict(values, source=str(path))
    assert assemble(cfg, with_data=False).model is not None
