"""Streaming a whole network chunk by chunk equals its whole-sequence forward, bit for bit."""

import pytest
import torch
from torch import nn

import spikeweave as sf
from spikeweave.errors import ConfigError, InputError
from spikeweave.layers import TimeFolded
from spikeweave.models import StreamState, build_model, stream, streamed_outputs
from spikeweave.neurons import NEURONS, SpikingNeuron, TimeChunked

SPIKING = ["lif", "if", "klif", "oscillating", "plif", "lif-floor", "lif-width"]
CHUNKS = [(1,) * 7, (1, 3, 2, 1)]
SHAPE = (1, 8, 8)


def _model(name: str, neuron: str | None, reset: str = "hard", **options) -> nn.Module:
    """A model whose every spiking layer fires on some steps: BatchNorm's running statistics
    set from the data (one training-mode pass) and a threshold the normalised input crosses."""
    torch.manual_seed(0)
    factory = None
    if neuron is not None:
        cls = NEURONS.get(neuron)
        factory = lambda: cls(reset=reset, threshold=0.3)  # noqa: E731
    options = {"population": 2, **options}
    if name == "convnet":
        options.update(channels=(4, 6), hidden=12)
    else:
        options.update(hidden=(16, 8))
    model = build_model(name, SHAPE, 3, factory, **options)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 1.0
    with torch.no_grad():
        model.train()(_input())
    return model.eval()


def _input(T: int = 7, B: int = 4) -> torch.Tensor:
    return torch.rand(T, B, *SHAPE, generator=torch.Generator().manual_seed(1)) * 2


def _streamed(model, x, chunks, keep_outputs=False):
    state, outs = None, []
    for k in chunks:
        t0 = 0 if state is None else state.step
        out, state = stream(model, x[t0 : t0 + k], state, keep_outputs=keep_outputs)
        outs.append(out)
    return torch.cat(outs), state


@pytest.mark.parametrize("chunks", CHUNKS, ids=["steps", "uneven"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("neuron", SPIKING)
@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_streaming_any_chunks_equals_the_whole_sequence_bit_for_bit(name, neuron, reset, chunks):
    model = _model(name, neuron, reset, dropout=0.3)
    x = _input()
    spikes = {}
    hooks = [
        m.register_forward_hook(lambda mod, args, out, n=n: spikes.setdefault(n, out))
        for n, m in model.named_modules()
        if isinstance(m, SpikingNeuron)
    ]
    with torch.no_grad():
        whole = model(x)
    for h in hooks:
        h.remove()
    # the comparison means something only if every spiking layer fires, but not everywhere
    for n, s in spikes.items():
        assert 0 < float(s.mean()) < 1, f"layer {n} is silent or saturated"
    with torch.no_grad():
        streamed, state = _streamed(model, x, chunks)
    assert torch.equal(streamed, whole)
    assert state.step == 7 and set(state.membranes) == set(spikes)


def test_the_ann_twin_streams_too():
    model = _model("convnet", None)
    with torch.no_grad():
        streamed, state = _streamed(model, _input(), (2, 5))
        assert torch.equal(streamed, model(_input()))
    assert state.membranes == {}


def test_the_final_membranes_are_those_of_the_whole_sequence():
    model = _model("mlp", "lif")
    x = _input()
    with torch.no_grad():
        _, state = _streamed(model, x, (1, 3, 3))
        h = model.fc1(model.flatten(x))
        _, v = model.spike1(h, return_state=True)
    assert torch.equal(state.membranes["spike1"], v)


def test_kept_outputs_give_the_tasks_readout_of_the_whole_sequence():
    model = _model("mlp", "lif")
    x = _input()
    with torch.no_grad():
        whole = model(x)
        _, state = _streamed(model, x, (1, 3, 2, 1), keep_outputs=True)
    # out.mean(0) sums pairwise: a running sum differs in the last bit, the kept outputs do not
    assert torch.equal(streamed_outputs(state).mean(0), whole.mean(0))
    assert torch.equal(streamed_outputs(state).mean(0).argmax(-1), whole.mean(0).argmax(-1))


def test_a_time_chunked_block_streams_like_the_block():
    torch.manual_seed(0)
    block = nn.Sequential(TimeFolded(nn.Linear(5, 6)), sf.LIF(threshold=0.3), TimeFolded(
        nn.Linear(6, 4)), sf.LIF(threshold=0.3))  # fmt: skip
    model = nn.Sequential(TimeChunked(block, chunk=2), TimeFolded(nn.Linear(4, 2)))
    x = torch.rand(6, 3, 5) * 3
    with torch.no_grad():
        streamed, state = _streamed(model, x, (1, 4, 1))
        assert torch.equal(streamed, model(x))
    assert set(state.membranes) == {"0.block.1", "0.block.3"}


def test_state_moves_between_devices_and_gradients_flow_through_it():
    model = _model("mlp", "lif")
    x = _input().requires_grad_()
    out, state = stream(model, x[:3])
    moved = state.to("cpu")
    assert isinstance(moved, StreamState) and moved.step == 3
    out2, _ = stream(model, x[3:], moved)
    out2.sum().backward()
    assert x.grad is not None and x.grad[:3].abs().sum() > 0  # through the carried state


@pytest.mark.parametrize("layer", ["bn", "dropout"])
def test_training_mode_batch_norm_and_dropout_are_refused(layer):
    model = _model("mlp", "lif", dropout=0.5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d if layer == "bn" else nn.Dropout):
            m.train()
    what = "BatchNorm" if layer == "bn" else "dropout"
    with pytest.raises(ConfigError, match=f"{what} layer .* training mode.*model.eval"):
        stream(model, _input()[:1])


def test_layers_that_may_mix_time_steps_are_refused():
    class Cumulative(nn.Module):
        def forward(self, x):
            return x.cumsum(0)

    class Custom(nn.Sequential):
        def forward(self, x):
            return super().forward(x).flip(0)

    x = torch.rand(3, 2, 4)
    with pytest.raises(ConfigError, match="layer '1' \\(Cumulative\\) is not known to act"):
        stream(nn.Sequential(sf.LIF(), Cumulative()), x)
    with pytest.raises(ConfigError, match="has its own forward"):
        stream(Custom(sf.LIF()), x)


def test_a_state_that_does_not_fit_the_model_or_chunk_is_refused():
    model = _model("mlp", "lif")
    x = _input()
    _, state = stream(model, x[:2])
    other = _model("convnet", "lif")
    with pytest.raises(InputError, match="not spiking layers of this model"):
        stream(other, x[2:3], state._replace(membranes={"nope": x[0]}))
    with pytest.raises(InputError, match="at step 2 but has no membrane for 'spike2'"):
        stream(model, x[2:3], state._replace(membranes={"spike1": state.membranes["spike1"]}))
    with pytest.raises(InputError, match="state must have shape"):
        stream(model, x[2:3, :2], state)  # another batch size
    with pytest.raises(InputError, match="must be a StreamState"):
        stream(model, x[2:3], {"step": 2})
    with pytest.raises(InputError, match="no steps"):
        stream(model, x[:0], state)
    with pytest.raises(InputError, match="no outputs"):
        streamed_outputs(state)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_streaming_on_a_gpu_equals_the_whole_sequence_there(name):
    model = _model(name, "lif").cuda()
    x = _input().cuda()
    with torch.no_grad():
        streamed, state = _streamed(model, x, (1, 3, 2, 1))
        assert torch.equal(streamed, model(x))
    assert all(v.is_cuda for v in state.membranes.values())
