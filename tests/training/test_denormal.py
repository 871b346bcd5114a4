import pytest
import torch

from spikeweave.training import flush_denormal


def _subnormal_survives() -> bool:
    return float(torch.tensor([1e-39]) * 1.0) != 0.0


@pytest.fixture(autouse=True)
def _can_flush():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals")


def test_subnormals_are_zero_inside_the_block_and_kept_after_it():
    assert _subnormal_survives()
    with flush_denormal():
        assert not _subnormal_survives()
    assert _subnormal_survives()


def test_the_mode_is_turned_off_even_when_the_block_raises():
    with pytest.raises(RuntimeError), flush_denormal():
        raise RuntimeError("boom")
    assert _subnormal_survives()


def test_off_leaves_subnormals_alone():
    with flush_denormal(False):
        assert _subnormal_survives()
