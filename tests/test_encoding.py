import pytest
import torch

from spikeweave import encoding
from spikeweave.errors import ConfigError, InputError


def test_direct_repeats_input_over_time():
    x = torch.rand(2, 3)
    y = encoding.direct(x, 4)
    assert y.shape == (4, 2, 3)
    assert all(torch.equal(y[t], x) for t in range(4))


def test_poisson_rate_matches_intensity():
    x = torch.tensor([0.0, 0.25, 0.8, 1.0])
    s = encoding.poisson(
        x.expand(500, 4).contiguous(), 100, generator=torch.Generator().manual_seed(0)
    )
    rate = s.mean(dim=(0, 1))
    torch.testing.assert_close(rate, x, atol=0.01, rtol=0)
    assert set(s.unique().tolist()) <= {0.0, 1.0}


def test_poisson_is_reproducible_with_a_generator():
    x = torch.rand(3, 5)
    a = encoding.poisson(x, 8, generator=torch.Generator().manual_seed(1))
    b = encoding.poisson(x, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_latency_fires_once_and_brighter_fires_earlier():
    x = torch.tensor([[1.0, 0.5, 0.02, 0.0]])
    s = encoding.latency(x, 10)
    assert s.sum(0).tolist() == [[1.0, 1.0, 1.0, 0.0]]
    first = s[:, 0].argmax(0)
    assert first[0] == 0 and first[0] < first[1] < first[2] <= 9


@pytest.mark.parametrize("fn", [encoding.poisson, encoding.latency])
def test_rate_codes_refuse_intensities_outside_unit_range(fn):
    with pytest.raises(InputError, match=r"must lie in \[0, 1\]"):
        fn(torch.tensor([1.5]), 4)


def test_unknown_encoder_and_bad_steps_are_refused():
    with pytest.raises(ConfigError, match="unknown encoder 'morse'"):
        encoding.encode("morse", torch.rand(2), 3)
    with pytest.raises(ConfigError, match="positive int"):
        encoding.direct(torch.rand(2), 0)


@pytest.mark.parametrize("fn", [encoding.direct, encoding.poisson, encoding.latency])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_every_encoder_refuses_nan_and_inf_instead_of_encoding_silence(fn, bad):
    x = torch.rand(3, 4)
    x[2, 1] = bad
    with pytest.raises(InputError, match="input contains NaN or inf") as info:
        fn(x, 4)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("T", [True, 2.0, "4"])
def test_steps_that_are_not_a_positive_int_are_refused(T):
    with pytest.raises(ConfigError, match="T must be a positive int"):
        encoding.direct(torch.rand(2), T)


@pytest.mark.parametrize("threshold", [1.0, -0.1, "0.1", True])
def test_latency_threshold_outside_zero_one_is_refused(threshold):
    with pytest.raises(ConfigError, match=r"threshold must be a number in \[0, 1\)"):
        encoding.latency(torch.rand(2), 4, threshold=threshold)


def test_integer_input_is_refused_naming_its_dtype():
    with pytest.raises(InputError, match="floating-point tensor.*torch.int64"):
        encoding.poisson(torch.ones(2, dtype=torch.int64), 4)


@pytest.mark.parametrize("name", ["direct", "poisson", "latency"])
def test_consecutive_windows_concatenate_to_the_whole_encoding(name):
    x = torch.rand(3, 6)
    kw = lambda: {"generator": torch.Generator().manual_seed(2)} if name == "poisson" else {}  # noqa: E731
    whole = encoding.encode(name, x, 9, **kw())
    gen = kw()
    parts = [encoding.encode_window(name, x, 9, a, b, **gen) for a, b in ((0, 1), (1, 5), (5, 9))]
    assert torch.equal(torch.cat(parts), whole)
    assert whole.sum() > 0


def test_encode_window_refuses_windows_outside_the_sequence():
    x = torch.rand(2, 3)
    with pytest.raises(InputError, match="0 <= start < stop <= T=4"):
        encoding.encode_window("direct", x, 4, 3, 5)
    with pytest.raises(InputError, match="0 <= start < stop"):
        encoding.encode_window("latency", x, 4, 2, 2)
    with pytest.raises(ConfigError, match="latency encoding: threshold"):
        encoding.encode_window("latency", x, 4, 0, 2, threshold=2.0)
