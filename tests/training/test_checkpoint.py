"""spikeweave.training.checkpoint gathers the checkpoint's public names from the modules that
define them: every name importable from it before the split still is, as the same object."""

from __future__ import annotations

import spikeweave.training as training
from spikeweave import checkpoint_file, nested_state
from spikeweave.training import checkpoint, meta_schema, weights_check


def test_every_name_the_checkpoint_module_exported_is_still_importable_from_it() -> None:
    assert sorted(checkpoint.__all__) == [
        "FORMAT",
        "FORMAT_VERSION",
        "METADATA_KEY",
        "MetaField",
        "TRAINING_KIND",
        "TRAINING_META_SCHEMA",
        "check_model_fits",
        "check_state_dtypes",
        "flatten_state",
        "load_checkpoint",
        "save_checkpoint",
        "unflatten_state",
        "validate_training_meta",
    ]
    homes = (checkpoint_file, nested_state, meta_schema, weights_check)
    for name in checkpoint.__all__:
        defined = [getattr(home, name) for home in homes if name in home.__all__]
        assert defined == [getattr(checkpoint, name)], name


def test_the_training_package_still_exports_save_and_load_checkpoint() -> None:
    assert training.save_checkpoint is checkpoint_file.save_checkpoint
    assert training.load_checkpoint is checkpoint_file.load_checkpoint
