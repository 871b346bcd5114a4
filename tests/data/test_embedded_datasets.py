import numpy as np
import pytest

from spikeweave import data
from spikeweave.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "n_train", "n_test", "shape"),
    [("digits", 1437, 360, (1, 8, 8)), ("mnist5k", 4000, 1000, (1, 28, 28))],
)
def test_embedded_split_sizes_shapes_and_ranges(name, n_train, n_test, shape):
    train, test = data.load(name, "train"), data.load(name, "test")
    assert len(train) == n_train and len(test) == n_test
    x, y = train.tensors
    assert tuple(x.shape[1:]) == shape == data.info(name).input_shape
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    assert str(y.dtype) == "torch.int64"


def test_mnist5k_split_is_stratified_and_disjoint():
    train, test = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    assert np.bincount(train.tensors[1].numpy()).tolist() == [400] * 10
    assert np.bincount(test.tensors[1].numpy()).tolist() == [100] * 10
    tr = {bytes(row) for row in train.tensors[0].flatten(1).numpy()}
    te = {bytes(row) for row in test.tensors[0].flatten(1).numpy()}
    assert len(tr & te) <= 5  # MNIST itself holds a few duplicate images


def test_split_is_the_same_every_time():
    a = data.load("digits", "test").tensors[1]
    b = data.load("digits", "test").tensors[1]
    assert (a == b).all()


def test_unknown_dataset_and_split_are_refused():
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        data.load("imagenet")
    with pytest.raises(ConfigError, match="split must be 'train' or 'test'"):
        data.load("digits", "val")
