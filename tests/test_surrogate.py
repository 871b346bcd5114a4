import math

import pytest
import torch

from spikeweave import surrogate as sg
from spikeweave.errors import ConfigError

ALL = [sg.Sigmoid, sg.Atan, sg.FastSigmoid, sg.Rectangular, sg.Triangle]


def expected_derivative(cls, alpha, x):
    # Written out independently of the library, straight from the documented formulas.
    if cls is sg.Sigmoid:
        s = 1 / (1 + torch.exp(-alpha * x))
        return alpha * s * (1 - s)
    if cls is sg.Atan:
        return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)
    if cls is sg.FastSigmoid:
        return (alpha / 2) / (1 + alpha * x.abs()) ** 2
    if cls is sg.Rectangular:
        return torch.where(x.abs() < 1 / (2 * alpha), alpha, 0.0).to(x.dtype)
    return alpha * torch.clamp(1 - alpha * x.abs(), min=0)


@pytest.mark.parametrize("cls", ALL)
def test_forward_is_heaviside_with_one_at_zero(cls):
    x = torch.tensor([-2.0, -1e-7, 0.0, 1e-7, 3.0])
    assert cls()(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("alpha", [0.5, 2.0, 7.0])
def test_backward_uses_the_documented_derivative(cls, alpha):
    x = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    cls(alpha)(x).sum().backward()
    torch.testing.assert_close(x.grad, expected_derivative(cls, alpha, x.detach()))


@pytest.mark.parametrize("cls", ALL)
def test_derivative_integrates_to_one(cls):
    x = torch.linspace(-400, 400, 4_000_001, dtype=torch.float64)
    area = torch.trapezoid(cls().derivative(x), x).item()
    # FastSigmoid and Atan have heavy tails; the window +-400 leaves < 1% outside.
    assert area == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_spikes_keep_the_input_dtype(dtype):
    x = torch.randn(10, dtype=dtype, requires_grad=True)
    s = sg.Atan()(x)
    s.sum().backward()
    assert s.dtype == dtype and x.grad.dtype == dtype


def test_get_surrogate_by_name_and_unknown_name_error():
    assert sg.get_surrogate("sigmoid", 3.0) == sg.Sigmoid(3.0)
    with pytest.raises(ConfigError, match="unknown surrogate 'tanh'; choose one of"):
        sg.get_surrogate("tanh")


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_nonpositive_or_nonfinite_alpha_is_refused(alpha):
    with pytest.raises(ConfigError, match="alpha must be a positive finite number"):
        sg.Atan(alpha)
