"""The public names of the training checkpoint, gathered from the modules that define them.

Code outside spikeweave imports these from here (error messages and the API docs name
``spikeweave.training.checkpoint.save_checkpoint``); spikeweave's own modules import from the
definitions:

- :mod:`spikeweave.checkpoint_file`: the file: :func:`save_checkpoint`, :func:`load_checkpoint`
  (a safetensors file, JSON metadata, a sha256 digest; nothing unpickled);
- :mod:`spikeweave.nested_state`: :func:`flatten_state` / :func:`unflatten_state`, optimizer and
  scheduler state as tensors plus JSON;
- :mod:`spikeweave.training.meta_schema`: what a training checkpoint's metadata must hold
  (:func:`validate_training_meta`);
- :mod:`spikeweave.training.weights_check`: whether the weights fit a model
  (:func:`check_state_dtypes`, :func:`check_model_fits`).
"""

from __future__ import annotations

from ..checkpoint_file import FORMAT, FORMAT_VERSION, METADATA_KEY, load_checkpoint, save_checkpoint
from ..nested_state import flatten_state, unflatten_state
from .meta_schema import TRAINING_KIND, TRAINING_META_SCHEMA, MetaField, validate_training_meta
from .weights_check import check_model_fits, check_state_dtypes

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "TRAINING_KIND",
    "TRAINING_META_SCHEMA",
    "MetaField",
    "check_model_fits",
    "check_state_dtypes",
    "flatten_state",
    "load_checkpoint",
    "save_checkpoint",
    "unflatten_state",
    "validate_training_meta",
]
