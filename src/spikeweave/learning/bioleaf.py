"""BioLeaF: a spiking dendritic microcircuit trained by local STDP-like rules (methods.md §5).

Only the abstract of arXiv 2111.13188 is available. Everything below is **spikeweave's
reading**: the dendritic cortical microcircuit of Sacramento, Ponte Costa, Bengio & Senn
(NeurIPS 2018) made spiking. docs/methods/bioleaf.md says which choice is ours.

Cells (layer ``k = 1..L``; ``L`` is the output; ``r`` a filtered spike trace in spikes/step)::

    pyramidal k   basal   v_B = W_up[k]·r[k-1] + b[k]                  (bottom-up, plastic)
                  apical  v_A = W_down[k]·r[k+1] + W_PI[k]·r_I[k]      (top-down fixed; PI plastic)
                  soma    u   = a_B·v_B + a_A·v_A                      (hidden; steady state of
                                                                         the conductance mix)
                          u   = v̂_B + γ·(u_target − v̂_B)              (output, nudged)
    interneuron k dendrite v_I = W_IP[k]·r[k] + b_I[k]                 (plastic)
                  soma     u_I = v̂_I + γ_I·(u[k+1] − v̂_I)              (nudged toward layer k+1)

with ``v̂_B = a_B·v_B`` (``a_B = g_B/(g_lk+g_B+g_A)`` hidden, ``g_B/(g_lk+g_B)`` output),
``v̂_I = a_D·v_I`` and ``a_A = g_A/(g_lk+g_B+g_A)``. One interneuron per pyramidal cell of the
layer above. Each soma drives an integrate-and-fire spike generator with input ``φ(u)``
(``φ`` = logistic, soft reset, random initial residual), so a cell fires at ``φ(u)`` spikes per
step; every synapse sees the presynaptic *trace* ``r ← r + (s − r)/τ_r``.

Plasticity, accumulated after ``settle`` steps and applied once per batch (no autograd)::

    ΔW_up[k] ∝ (s[k]   − φ(v̂_B[k]))ᵀ · r[k-1]     spike minus dendritic prediction × pre trace
    ΔW_IP[k] ∝ (s_I[k] − φ(v̂_I[k]))ᵀ · r[k]
    ΔW_PI[k] ∝ (0 − v_A[k])ᵀ       · r_I[k]     silences the apical compartment

A self-predicting phase (no target; only W_IP and W_PI learn) is followed by the learning
phase (output nudged toward the target, every rule on). In the self-predicting state the
apical compartment carries ``W_down·(r[k+1] − r[k+1]_free)``: the back-propagated error.

>>> net = Microcircuit((64, 100, 10))
>>> out = net(x)                          # x [T, B, 64] -> output spikes [T·k − settle, B, 10]
>>> with net.plasticity(net.target_potentials(y)):
...     out = net(x)                               # runs nudged and updates the weights
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..neurons import check_time_major
from ..tasks import Task
from ..training.callbacks import Callback
from ..training.config import TrainConfig
from ..training.methods import METHODS, StepContext, TrainingMethod

__all__ = [
    "FEEDBACKS",
    "RULES",
    "BioLeaFOptions",
    "Microcircuit",
    "BioLeaF",
    "ApicalMismatch",
    "phi",
    "nudging_loss",
    "rate_network_gradients",
    "apical_on",
    "plot_apical_mismatch",
]

FEEDBACKS = ("random", "symmetric")
RULES = ("up", "ip", "pi")
DEFAULT_HIDDEN = (500,)


def phi(u: torch.Tensor) -> torch.Tensor:
    """Rate function: spikes per step (logistic, in ``(0, 1)``)."""
    return torch.sigmoid(u)


def nudging_loss(v_out: torch.Tensor, u_target: torch.Tensor) -> torch.Tensor:
    """The loss whose gradient the nudged output follows, summed over units, mean over batch.

    ``ℓ(v̂) = −(u* − v̂)·φ(v̂) − softplus(v̂)``, so ``dℓ/dv̂ = −φ'(v̂)·(u* − v̂)``: the error the
    nudging ``γ·(u* − v̂)`` puts into the output rate, to first order in ``γ``. It is minimal
    at ``v̂ = u*`` and equals the rate error ``½(φ(u*) − φ(v̂))²`` up to a factor ``φ'`` per unit.
    ``v_out, u_target``: ``[B, outputs]`` potentials.
    """
    loss = -(u_target - v_out) * phi(v_out) - nn.functional.softplus(v_out)
    return loss.sum(-1).mean()


@dataclass(frozen=True)
class BioLeaFOptions:
    """Options of ``--method bioleaf`` (a ``[method.bioleaf]`` table).

    Attributes:
        substeps: microcircuit steps per input time step (the run's ``steps``·``substeps``
            steps in all; one step is the trace and spike-generator clock).
        settle: steps at the start of each presentation before plasticity accumulates.
        tau_trace: time constant of the spike traces ``r``, in steps.
        g_lk, g_b, g_a, g_d: leak, basal, apical and interneuron-dendrite conductances
            (Sacramento et al.'s values by default).
        nudging: ``γ``, how far the output soma moves toward the target potential.
        interneuron_nudging: ``γ_I``, how far interneurons move toward layer ``k+1``.
        target_on, target_off: target rates (spikes/step) of the correct and other outputs.
        lr_out, lr_hidden: learning rates of W_up (and biases) of the output and hidden layers.
        lr_ip, lr_pi: learning rates of W_IP (and interneuron biases) and W_PI.
        self_predict_batches: batches of the self-predicting phase (no target).
        feedback: ``"random"`` (fixed random top-down weights) or ``"symmetric"`` (top-down =
            transposed forward weights, kept so after each update: the BP special case).
        init_gain: forward weights start ``N(0, init_gain²/fan_in)``.
        init_bias: initial basal bias of the hidden layers (negative: sparse firing, which
            keeps the output's delta rule well conditioned; ``a_B·init_bias`` ≈ −2 → ~0.1
            spikes/step at rest).
    """

    substeps: int = 10
    settle: int = 12
    tau_trace: float = 6.0
    g_lk: float = 0.1
    g_b: float = 1.0
    g_a: float = 0.8
    g_d: float = 1.0
    nudging: float = 0.5
    interneuron_nudging: float = 0.3
    target_on: float = 0.9
    target_off: float = 0.05
    lr_out: float = 1.0
    lr_hidden: float = 0.5
    lr_ip: float = 1.0
    lr_pi: float = 0.3
    self_predict_batches: int = 60
    feedback: str = "random"
    init_gain: float = 6.0
    init_bias: float = -4.0


def check_options(o: BioLeaFOptions) -> None:
    """Raise a one-line ``ConfigError`` for the first out-of-range option."""
    for name in ("substeps",):
        if getattr(o, name) < 1:
            raise ConfigError(f"[method.bioleaf] {name} must be at least 1, got {getattr(o, name)}")
    for name in ("settle", "self_predict_batches"):
        if getattr(o, name) < 0:
            raise ConfigError(f"[method.bioleaf] {name} must be >= 0, got {getattr(o, name)}")
    for name in ("tau_trace",):
        if getattr(o, name) < 1:
            raise ConfigError(f"[method.bioleaf] {name} must be >= 1 step, got {getattr(o, name)}")
    for name in ("g_lk", "g_b", "g_a", "g_d", "init_gain"):
        if getattr(o, name) <= 0:
            raise ConfigError(f"[method.bioleaf] {name} must be > 0, got {getattr(o, name)}")
    for name in ("lr_out", "lr_hidden", "lr_ip", "lr_pi"):
        if getattr(o, name) < 0:
            raise ConfigError(f"[method.bioleaf] {name} must be >= 0, got {getattr(o, name)}")
    for name in ("nudging", "interneuron_nudging"):
        if not 0 <= getattr(o, name) < 1:
            raise ConfigError(f"[method.bioleaf] {name} must be in [0, 1), got {getattr(o, name)}")
    for name in ("target_on", "target_off"):
        if not 0 < getattr(o, name) < 1:
            raise ConfigError(
                f"[method.bioleaf] {name} must be a rate in (0, 1) spikes/step, got "
                f"{getattr(o, name)}"
            )
    if o.target_off >= o.target_on:
        raise ConfigError(
            f"[method.bioleaf] target_off ({o.target_off}) must be below target_on ({o.target_on})"
        )
    if o.feedback not in FEEDBACKS:
        raise ConfigError(
            f"[method.bioleaf] feedback must be one of {', '.join(FEEDBACKS)}, got {o.feedback!r}"
        )


class _SpikeTap(nn.Module):
    """Lets the monitor see a population's spikes: ``spikes(s)`` returns ``s`` unchanged
    (``spikeweave.monitor`` records what a module's ``spikes`` returns)."""

    def spikes(self, s: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return s


@dataclass
class _Plasticity:
    u_target: torch.Tensor | None
    rules: tuple[str, ...]
    lr_scale: float = 1.0


class Microcircuit(nn.Module):
    """Pyramidal layers ``sizes[1:]`` with interneurons, on input of ``sizes[0]`` features.

    ``forward(x [T, B, ...])`` runs ``T·substeps`` steps without a target and returns the
    output layer's spikes after the first ``settle`` steps, ``[T·substeps − settle, B,
    sizes[-1]]`` (float 0/1; at least the last step). Inside
    :meth:`plasticity` the next forward runs nudged, updates the weights in place and returns
    the output's dendritic prediction ``φ(v̂_B)`` per step (spikes/step) instead of the nudged
    spikes, which would echo the target.
    All weights are parameters with ``requires_grad=False`` (checkpointed, never trained by
    autograd); ``batches_seen`` (a buffer) counts plastic batches for the phase schedule.

    Attributes (after a forward): ``last_apical`` — mean ``|v_A|`` per hidden layer over the
    plastic window, and ``last_topdown`` — mean ``|W_down·r[k+1]|`` (the input to cancel).
    """

    def __init__(self, sizes: Sequence[int], options: BioLeaFOptions | None = None) -> None:
        super().__init__()
        o = options or BioLeaFOptions()
        check_options(o)
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise ConfigError(f"Microcircuit sizes must be >= 2 positive integers, got {sizes}")
        self.sizes = tuple(int(n) for n in sizes)
        self.options = o
        L = len(self.sizes) - 1
        self.a_b = o.g_b / (o.g_lk + o.g_b + o.g_a)
        self.a_a = o.g_a / (o.g_lk + o.g_b + o.g_a)
        self.a_b_out = o.g_b / (o.g_lk + o.g_b)
        self.a_d = o.g_d / (o.g_lk + o.g_d)

        def param(*shape: int, std: float) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape) * std, requires_grad=False)

        s = self.sizes
        self.w_up = nn.ParameterList(
            [param(s[k + 1], s[k], std=o.init_gain / math.sqrt(s[k])) for k in range(L)]
        )
        self.b_up = nn.ParameterList([param(s[k + 1], std=0.0) for k in range(L)])
        with torch.no_grad():
            for b in self.b_up[:-1]:
                b.fill_(o.init_bias)
        # hidden layer k (0-based, k < L-1) gets top-down input from layer k+1 and has s[k+2]
        # interneurons (one per pyramidal cell of the layer above)
        self.w_down = nn.ParameterList(
            [param(s[k + 1], s[k + 2], std=1.0 / math.sqrt(s[k + 2])) for k in range(L - 1)]
        )
        self.w_ip = nn.ParameterList(
            [param(s[k + 2], s[k + 1], std=o.init_gain / math.sqrt(s[k + 1])) for k in range(L - 1)]
        )
        self.b_ip = nn.ParameterList([param(s[k + 2], std=0.0) for k in range(L - 1)])
        self.w_pi = nn.ParameterList(
            [param(s[k + 1], s[k + 2], std=1.0 / math.sqrt(s[k + 2])) for k in range(L - 1)]
        )
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.int64))
        self.pyramidal = nn.ModuleList([_SpikeTap() for _ in range(L)])
        if o.feedback == "symmetric":
            self.sync_feedback()
        self._plastic: _Plasticity | None = None
        self.last_apical: list[float] = [0.0] * (L - 1)
        self.last_topdown: list[float] = [0.0] * (L - 1)
        # per-mode sums for ApicalMismatch: mode -> [sum |v_A| per layer, sum |top-down|, n]
        self.apical_sums: dict[str, list[Any]] = {}

    # -- helpers ----------------------------------------------------------------------------
    @property
    def hidden_names(self) -> list[str]:
        """``h1, h2, ...``: the hidden layers, whose apical compartments carry the error."""
        return [f"h{k + 1}" for k in range(len(self.sizes) - 2)]

    def target_potentials(self, y: torch.Tensor) -> torch.Tensor:
        """Class labels ``[B]`` -> target potentials ``[B, outputs]`` (``φ⁻¹`` of the target
        rates ``target_on`` / ``target_off``)."""
        o = self.options
        on, off = (
            math.log(o.target_on / (1 - o.target_on)),
            math.log(o.target_off / (1 - o.target_off)),
        )
        w = self.w_up[0]  # built where the weights are: y may be on the GPU
        u = torch.full((len(y), self.sizes[-1]), off, dtype=w.dtype, device=w.device)
        u[torch.arange(len(y), device=w.device), y.to(w.device).long()] = on
        return u

    @torch.no_grad()
    def sync_feedback(self) -> None:
        """Top-down weights := transposed forward weights of the layer above."""
        for k, w in enumerate(self.w_down):
            w.copy_(self.w_up[k + 1].T)

    @torch.no_grad()
    def set_self_predicting(self) -> None:
        """Put the interneurons in the ideal self-predicting state: ``v̂_I`` equals the free
        potential of the layer above and ``W_PI = −W_down`` (the BP special case's premise)."""
        L = len(self.sizes) - 1
        for k in range(L - 1):
            a_up = self.a_b_out if k + 1 == L - 1 else self.a_b
            self.w_ip[k].copy_(self.w_up[k + 1] * (a_up / self.a_d))
            self.b_ip[k].copy_(self.b_up[k + 1] * (a_up / self.a_d))
            self.w_pi[k].copy_(-self.w_down[k])

    @contextlib.contextmanager
    def plasticity(
        self, u_target: torch.Tensor | None, rules: Sequence[str] = RULES, lr_scale: float = 1.0
    ) -> Iterator[None]:
        """The next forward runs with the output nudged toward ``u_target [B, outputs]``
        (None: no target, the self-predicting phase) and applies the ``rules`` it names, with
        every learning rate multiplied by ``lr_scale``."""
        bad = [r for r in rules if r not in RULES]
        if bad:
            raise ConfigError(f"unknown plasticity rule {bad[0]!r}; choose from {', '.join(RULES)}")
        self._plastic = _Plasticity(u_target, tuple(rules), float(lr_scale))
        try:
            yield
        finally:
            self._plastic = None

    # -- dynamics -----------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        check_time_major(x, "Microcircuit")
        plastic = self._plastic
        self._plastic = None  # one forward per plasticity() block
        u_target = plastic.u_target if plastic else None
        out, deltas = self.simulate(x, u_target, plastic.rules if plastic else ())
        if plastic is not None:
            self.apply_updates(deltas, plastic.lr_scale)
            self.batches_seen += 1
        # the readout, like the plasticity, uses the steps after the settling transient
        return out[min(self.options.settle, len(out) - 1) :]

    @torch.no_grad()
    def simulate(
        self, x: torch.Tensor, u_target: torch.Tensor | None = None, rules: Sequence[str] = ()
    ) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """Run the microcircuit on ``x [T, B, ...]`` (input rates or spikes); return the output
        ``[T·substeps, B, outputs]`` (spikes; with a target, the output's dendritic prediction
        ``φ(v̂_B)`` in spikes/step) and the updates of ``rules`` averaged over the batch
        and the plastic steps (``{"up": [ΔW per layer], "b_up": [Δb], ...}``, before the
        learning rate); no side effects on the weights."""
        o = self.options
        T_in, B = x.shape[:2]
        w = self.w_up[0]
        inp = x.reshape(T_in, B, -1).to(w.device, w.dtype)
        if inp.shape[-1] != self.sizes[0]:
            raise ConfigError(
                f"Microcircuit expects {self.sizes[0]} input features, got {inp.shape[-1]}"
            )
        L = len(self.sizes) - 1
        steps = T_in * o.substeps
        decay = 1.0 / o.tau_trace
        zeros = [torch.zeros(B, n, dtype=w.dtype, device=w.device) for n in self.sizes]
        tr = [z.clone() for z in zeros]  # traces r[0..L]
        tr_i = [zeros[k + 2].clone() for k in range(L - 1)]
        res = [torch.rand_like(z) for z in zeros[1:]]  # spike-generator residuals in [0, 1)
        res_i = [torch.rand_like(zeros[k + 2]) for k in range(L - 1)]
        record = not self.training and not rules  # the monitor's spikes: free runs only
        out = torch.empty(steps, B, self.sizes[-1], dtype=w.dtype, device=w.device)
        spikes_rec: list[list[torch.Tensor]] = [[] for _ in range(L)] if record else []
        # per plastic step: post error and pre trace, multiplied once at the end (one GEMM)
        err: dict[str, list[list[torch.Tensor]]] = {r: [[] for _ in range(L)] for r in RULES}
        pre: dict[str, list[list[torch.Tensor]]] = {r: [[] for _ in range(L)] for r in RULES}
        ap_sum = [0.0] * (L - 1)
        td_sum = [0.0] * (L - 1)
        n_plastic = 0
        for t in range(steps):
            learn = t >= o.settle
            n_plastic += learn
            tr[0] += (inp[t // o.substeps] - tr[0]) * decay
            u_all: list[torch.Tensor] = []
            for k in range(L):
                vb = torch.addmm(self.b_up[k], tr[k], self.w_up[k].T)
                if k < L - 1:
                    vhat = self.a_b * vb
                    top = tr[k + 2] @ self.w_down[k].T  # layer above: last step's trace
                    va = top + tr_i[k] @ self.w_pi[k].T
                    u = vhat + self.a_a * va
                    if learn:
                        ap_sum[k] += float(va.abs().mean())
                        td_sum[k] += float(top.abs().mean())
                        if "pi" in rules:
                            err["pi"][k].append(-va)
                            pre["pi"][k].append(tr_i[k].clone())
                else:
                    vhat = self.a_b_out * vb
                    u = vhat if u_target is None else vhat + o.nudging * (u_target - vhat)
                u_all.append(u)
                s = _fire(res[k], phi(u))
                if learn and "up" in rules:
                    err["up"][k].append(s - phi(vhat))
                    pre["up"][k].append(tr[k].clone())
                tr[k + 1] += (s - tr[k + 1]) * decay
                if k == L - 1:
                    # nudged runs report the output's own dendritic prediction φ(v̂_B) (the
                    # rate it fires without the target): a nudged spike count would just echo
                    # the target and make the running train accuracy meaningless
                    out[t] = s if u_target is None else phi(vhat)
                if record:
                    spikes_rec[k].append(s.to(torch.bool))
            for k in range(L - 1):
                vhat_i = self.a_d * torch.addmm(self.b_ip[k], tr[k + 1], self.w_ip[k].T)
                u_i = vhat_i + o.interneuron_nudging * (u_all[k + 1] - vhat_i)
                s_i = _fire(res_i[k], phi(u_i))
                if learn and "ip" in rules:
                    err["ip"][k].append(s_i - phi(vhat_i))
                    pre["ip"][k].append(tr[k + 1].clone())
                tr_i[k] += (s_i - tr_i[k]) * decay
        n = max(n_plastic, 1)
        self.last_apical = [a / n for a in ap_sum]
        self.last_topdown = [a / n for a in td_sum]
        mode = "train" if self.training else "test"
        sums = self.apical_sums.setdefault(mode, [[0.0] * (L - 1), [0.0] * (L - 1), 0])
        for k in range(L - 1):
            sums[0][k] += self.last_apical[k]
            sums[1][k] += self.last_topdown[k]
        sums[2] += 1
        if record:
            for k in range(L):
                self.pyramidal[k].spikes(torch.stack(spikes_rec[k]).to(w.dtype))
        deltas: dict[str, list[torch.Tensor]] = {}
        for r in rules:
            ks = range(L) if r == "up" else range(L - 1)
            if n_plastic == 0:
                continue
            e = {k: torch.cat(err[r][k]) for k in ks}
            scale = 1.0 / (B * n_plastic)
            deltas[r] = [(e[k].T @ torch.cat(pre[r][k])) * scale for k in ks]
            if r in ("up", "ip"):
                deltas[f"b_{r}"] = [e[k].sum(0) * scale for k in ks]
        return out, deltas

    @torch.no_grad()
    def apply_updates(self, deltas: dict[str, list[torch.Tensor]], lr_scale: float = 1.0) -> None:
        """``W += lr·lr_scale·ΔW`` for every rule in ``deltas`` (as :meth:`simulate` returns
        them)."""
        o = self.options
        L = len(self.sizes) - 1
        lr_up = [o.lr_hidden] * (L - 1) + [o.lr_out]
        targets = {
            "up": (self.w_up, lr_up),
            "b_up": (self.b_up, lr_up),
            "ip": (self.w_ip, [o.lr_ip] * (L - 1)),
            "b_ip": (self.b_ip, [o.lr_ip] * (L - 1)),
            "pi": (self.w_pi, [o.lr_pi] * (L - 1)),
        }
        for key, ds in deltas.items():
            params, lrs = targets[key]
            for p, d, lr in zip(params, ds, lrs, strict=True):
                p.add_(d, alpha=lr * lr_scale)
        if o.feedback == "symmetric" and "up" in deltas:
            self.sync_feedback()


@torch.no_grad()
def apical_on(
    model: Microcircuit, x: torch.Tensor, steps: int = 4, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Mean ``|v_A|`` and mean top-down input ``|W_down·r|`` per hidden layer on ``x``
    (``[B, ...]`` rates, shown for ``steps`` input steps) without a target, in eval mode.

    Leaves the model's mode, its epoch record and torch's global RNG as they were.
    """
    was_training = model.training
    saved = {k: [list(v[0]), list(v[1]), v[2]] for k, v in model.apical_sums.items()}
    model.eval()
    try:
        where = model.w_up[0].device  # fork the generator of the device that draws
        with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []):
            torch.manual_seed(seed)
            model(x.reshape(len(x), -1).to(where).expand(steps, -1, -1))
        return list(model.last_apical), list(model.last_topdown)
    finally:
        model.apical_sums = saved
        model.train(was_training)


def _fire(residual: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Integrate-and-fire spike generator driven by ``rate`` (spikes/step, soft reset):
    updates ``residual`` in place and returns the spikes (0/1)."""
    residual.add_(rate)
    s = (residual >= 1.0).to(rate.dtype)
    residual.sub_(s)
    return s


# ---------------------------------------------------------------------------------------------
# the reference: the rate-coded network the microcircuit approximates (tests, diagnostics)
# ---------------------------------------------------------------------------------------------


def rate_network_gradients(
    model: Microcircuit, x: torch.Tensor, u_target: torch.Tensor
) -> dict[str, list[torch.Tensor]]:
    """Autograd gradients of :func:`nudging_loss` in the rate-coded twin of ``model``'s free
    state, for every forward weight and bias: ``{"up": [dL/dW], "b_up": [dL/db]}``.

    The twin: ``r0 = x`` (rates ``[B, features]``), hidden ``r = φ(a_B·(W·r + b))``, output
    potential ``v̂ = a_B,out·(W·r + b)``. Used by the BP-equivalence test only; the
    microcircuit's own updates never call autograd.
    """
    ws = [w.detach().clone().requires_grad_(True) for w in model.w_up]
    bs = [b.detach().clone().requires_grad_(True) for b in model.b_up]
    with torch.enable_grad():
        r = x.reshape(len(x), -1).to(ws[0].device, ws[0].dtype)
        for k, (w, b) in enumerate(zip(ws, bs, strict=True)):
            v = r @ w.T + b
            if k < len(ws) - 1:
                r = phi(model.a_b * v)
            else:
                v_out = model.a_b_out * v
        loss = nudging_loss(v_out, u_target)
        grads = torch.autograd.grad(loss, ws + bs)
    return {"up": list(grads[: len(ws)]), "b_up": list(grads[len(ws) :])}


# ---------------------------------------------------------------------------------------------
# the method
# ---------------------------------------------------------------------------------------------


def _unwrap(model: nn.Module) -> Microcircuit:
    inner = getattr(model, "module", model)
    if not isinstance(inner, Microcircuit):
        raise ConfigError("--method bioleaf trains its own Microcircuit; build it with the method")
    return inner


@METHODS.register("bioleaf")
class BioLeaF(TrainingMethod):
    """``--method bioleaf``: the spiking dendritic microcircuit, local rules, no optimizer.

    ``build_model`` builds a :class:`Microcircuit` with the config's ``hidden`` sizes (default
    ``(500,)``) for a flattened input; the config's neuron options do not apply (the cells are
    the microcircuit's own). The first ``self_predict_batches`` batches run without a target
    (only the interneuron synapses learn); every later batch nudges the output toward the
    target and applies every rule. The run reports the task's loss (it is not what the rules
    descend). :meth:`callbacks` gives :class:`ApicalMismatch` for the apical-mismatch record.
    """

    name = "bioleaf"
    Options = BioLeaFOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        check_options(self.options)
        # (schedule, gamma, epochs, batches per epoch) of the run being trained: method state,
        # saved in the checkpoint's method_state (state_dict) and restored on resume.
        self.schedule: tuple[str, float, int, int] | None = None

    def model_fields(self) -> frozenset[str] | None:
        """The microcircuit reads the model (which must be ``mlp``) and its hidden sizes."""
        return frozenset({"model", "hidden"})

    def build_model(self, config: TrainConfig, task: Task) -> nn.Module:  # noqa: D102
        if task.name != "classification":
            raise ConfigError(
                f"--method bioleaf trains classifiers only, got task {task.name!r}; leave task out"
            )
        if config.architecture != "mlp" or not config.spiking:
            raise ConfigError(
                f"--method bioleaf builds a fully connected spiking microcircuit; use --model mlp "
                f"(got {config.model!r})"
            )
        hidden = tuple(config.hidden) or DEFAULT_HIDDEN
        sizes = (math.prod(task.spec.input_shape), *hidden, task.spec.num_outputs)
        return Microcircuit(sizes, self.options)

    def optimizer_fields(self) -> frozenset[str]:
        """The local rules read only the schedule of their learning rates (``[method.bioleaf]``
        holds the rates themselves); ``lr``, ``weight_decay`` and ``grad_clip`` are refused."""
        return frozenset({"schedule", "gamma"})

    def configure_optimizers(self, model, config, steps_per_epoch):
        """No optimizer; remembers the run's length for the learning-rate schedule."""
        self.schedule = (config.schedule, config.gamma, config.epochs, steps_per_epoch)
        return None

    def state_dict(self) -> dict[str, Any]:
        """The local rules' learning-rate schedule (empty before ``configure_optimizers``)."""
        return {} if self.schedule is None else {"schedule": list(self.schedule)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the schedule; a run resumed with more epochs keeps its new length (as the
        trainer stretches a cosine optimizer schedule)."""
        unknown = sorted(set(state) - {"schedule"})
        if unknown:
            raise ValueError(f"unexpected method state {unknown}")
        if "schedule" not in state:
            return
        kind, gamma, epochs, per_epoch = state["schedule"]
        if self.schedule is not None:
            epochs = max(int(epochs), self.schedule[2])
        self.schedule = (str(kind), float(gamma), int(epochs), int(per_epoch))

    def lr_scale(self, batches_seen: int) -> float:
        """The config's schedule applied to the local rules' learning rates, over the learning
        phase: ``cosine`` decays to 0 at the last batch, ``exponential`` multiplies by
        ``gamma`` per epoch, ``constant`` keeps 1."""
        schedule = self.schedule
        if schedule is None:
            return 1.0
        kind, gamma, epochs, per_epoch = schedule
        done = max(batches_seen - self.options.self_predict_batches, 0)
        total = max(epochs * per_epoch - self.options.self_predict_batches, 1)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(done / total, 1.0)))
        if kind == "exponential":
            return gamma ** (done / per_epoch)
        return 1.0

    def phase(self, model: nn.Module) -> str:
        """``"self-predicting"`` or ``"learning"`` for the model's next batch."""
        seen = int(_unwrap(model).batches_seen)
        return "self-predicting" if seen < self.options.self_predict_batches else "learning"

    def train_step(
        self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One presentation of the batch with plasticity on; returns ``(output spikes, loss)``."""
        net = _unwrap(ctx.model)
        with torch.no_grad():
            if self.phase(net) == "self-predicting":
                with net.plasticity(None, rules=("ip", "pi")):
                    out = ctx.forward(x)
            else:
                scale = self.lr_scale(int(net.batches_seen))
                with net.plasticity(net.target_potentials(y), RULES, scale):
                    out = ctx.forward(x)
            return out, ctx.loss(out, y)

    def callbacks(self) -> list[Callback]:
        """Callbacks that record this method's state: :class:`ApicalMismatch`."""
        return [ApicalMismatch()]


# ---------------------------------------------------------------------------------------------
# the apical mismatch record and plot
# ---------------------------------------------------------------------------------------------


class ApicalMismatch(Callback):
    """Adds the mean ``|v_A|`` per hidden layer to each epoch's row and draws
    ``apical_mismatch.png`` into the run directory at the end.

    Keys: ``apical_train/hK`` (training presentations: the self-predicting phase, then the
    nudged learning phase, where it carries the error), ``apical_test/hK`` (the test set, no
    target: near 0 in the self-predicting state) and ``apical_test_rel/hK`` (that divided by
    the mean top-down input ``|W_down·r|`` it has to cancel). Units: membrane units.
    """

    def on_epoch_start(self, trainer, epoch):  # noqa: D102
        _unwrap(trainer.model).apical_sums.clear()

    def on_epoch_end(self, trainer, epoch, row):  # noqa: D102
        row.update(apical_row(_unwrap(trainer.model)))

    def on_fit_end(self, trainer, summary):  # noqa: D102
        if not getattr(trainer.config, "plots", True):  # the values stay in metrics.jsonl
            return
        history = getattr(trainer, "history", [])
        if history and any(k.startswith("apical_") for k in history[-1]):
            plot_apical_mismatch(history, trainer.rundir.path / "apical_mismatch.png")


def apical_row(model: Microcircuit) -> dict[str, float]:
    """The epoch's apical means from ``model.apical_sums`` (see :class:`ApicalMismatch`)."""
    row: dict[str, float] = {}
    for mode, (ap, td, n) in model.apical_sums.items():
        for k, name in enumerate(model.hidden_names):
            row[f"apical_{mode}/{name}"] = ap[k] / max(n, 1)
            if mode == "test":
                row[f"apical_{mode}_rel/{name}"] = ap[k] / max(td[k], 1e-12)
    return row


def plot_apical_mismatch(
    history: Sequence[dict[str, Any]], path: Any, title: str = "apical mismatch"
) -> Any:
    """Mean ``|v_A|`` per hidden layer per epoch (train and test), log scale; returns the path."""
    from matplotlib.ticker import MaxNLocator

    from ..plots import _layer_color, _new_figure, _save, _series_marker, _style_axes

    fig = _new_figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    keys = sorted({k for row in history for k in row if k.startswith("apical_")})
    for i, key in enumerate(k for k in keys if "_rel/" not in k):
        xs = [row["epoch"] for row in history if key in row]
        ys = [max(row[key], 1e-6) for row in history if key in row]
        test = key.startswith("apical_test")
        layer = key.split("/", 1)[-1]
        label = f"{layer}, {'test' if test else 'training'}"
        ax.plot(xs, ys, "-" if test else "--", marker=_series_marker(i), ms=4,
                color=_layer_color(i), label=label)  # fmt: skip
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean |v_A| (membrane units)")
    ax.legend(title="dashed: training (nudged), solid: test (no target)", fontsize=8,
              title_fontsize=8)  # fmt: skip
    _style_axes(ax)
    fig.tight_layout()
    return _save(fig, path)
