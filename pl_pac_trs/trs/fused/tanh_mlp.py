"""A tanh MLP evaluated as one autograd node: forward and a hand-written backward.

The ODEN field of the reference experiments is a tanh MLP with 2-4 inputs and outputs and wide
hidden layers (``2 -> 1000 -> 2``), evaluated thirty times per training step (ten leapfrog
steps, three evaluations each). Left to autograd, every evaluation keeps several full-size
temporaries and computes the gradients of the narrow layers with matrix products in their
slow orientation. :func:`tanh_mlp` computes the same function and the same gradients with

* the narrow products of the backward pass taken in the orientation whose output is wide
  (``(x^T g)^T`` instead of ``g^T x``; both are the same sums, in another order);
* the ``tanh`` output kept as the only saved activation (its derivative is ``1 - y^2``);
* no input gradient when the input does not need one (the data start of a rollout);
* optionally (``fast_tanh=True``) ``tanh(z) = 2 sigmoid(2z) - 1``, whose ``2z`` comes straight
  out of the matrix product (``alpha = beta = 2``): PyTorch's CPU ``sigmoid`` is faster than
  its ``tanh`` (measured: ``docs/trs.md``, "Fused fields"). The absolute error against
  ``torch.tanh`` stays below ``2.5e-7`` in float32; the relative error near zero is larger
  (``tanh`` is then close to its argument), which is why it is an option.

The backward pass is differentiable once (``once_differentiable``): second derivatives through
the field (for a Hamiltonian or a Jacobian penalty) need the plain module
(:class:`~pl_pac_trs.trs.ODENField` with ``fused=False``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from operator import itemgetter

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from pl_pac_trs.trs.fused.activation_pool import RolloutActivations, activation_store
from pl_pac_trs.trs.integrators import leapfrog_step, march

__all__ = [
    "LeapfrogTanhMLPFunction",
    "TanhMLPFunction",
    "is_tanh_mlp",
    "leapfrog_forward",
    "mlp_backward",
    "mlp_forward",
    "mlp_params",
    "recorded_evaluation",
    "rollout_activations",
    "save_rollout",
    "saved_rollout",
    "tanh_mlp",
    "tanh_mlp_leapfrog",
]


def is_tanh_mlp(net: nn.Module) -> bool:
    """Whether ``net`` is an ``nn.Sequential`` of ``Linear, Tanh, ..., Linear`` (as
    :func:`~pl_pac_trs.trs.mlp` builds it), which :func:`tanh_mlp` can evaluate."""
    if not isinstance(net, nn.Sequential) or len(net) % 2 != 1:
        return False
    for i, layer in enumerate(net):
        expected = nn.Linear if i % 2 == 0 else nn.Tanh
        if type(layer) is not expected:
            return False
    return all(layer.bias is not None for layer in list(net)[:-1:2])


#: Products whose result has at most this many columns are computed transposed.
_NARROW = 8


def _mm(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b``; when the result is narrow (``b`` has few columns), as ``(b^T a^T)^T`` with
    ``b^T`` contiguous: the CPU GEMM is faster with the wide side as columns (``docs/trs.md``).
    The result is then a transposed view."""
    if b.shape[1] <= _NARROW < a.shape[0]:
        return (b.t().contiguous() @ a.t()).t()
    return a @ b


def _n_hidden(params: Sequence[Tensor], last_bias: bool) -> int:
    """The hidden layers of a tanh MLP given by :func:`mlp_params`."""
    return (len(params) - 1 - int(last_bias)) // 2


def rollout_activations(
    evaluations: int, x: Tensor, params: Sequence[Tensor], last_bias: bool
) -> RolloutActivations | None:
    """Pooled blocks (:func:`~pl_pac_trs.trs.fused.activation_pool.activation_store`) for the hidden
    activations of ``evaluations`` evaluations of the MLP ``params`` (:func:`mlp_params`) on a
    batch like ``x``, or ``None``."""
    widths = [params[2 * i].shape[0] for i in range(_n_hidden(params, last_bias))]
    return activation_store(evaluations, x, widths, params)


def mlp_forward(
    x: Tensor,
    params: Sequence[Tensor],
    last_bias: bool,
    fast_tanh: bool,
    store: RolloutActivations | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """The MLP's output and the activations its backward needs (``[x, y_1, ..., y_L]``); with
    ``store`` the hidden activations are written into its next slots."""
    n_hidden = _n_hidden(params, last_bias)
    saved = [x]
    a = x
    for i in range(n_hidden):
        weight, bias = params[2 * i], params[2 * i + 1]
        slot = None if store is None else store.slot(i)
        if fast_tanh:  # tanh(z) = 2 sigmoid(2z) - 1, the 2z straight out of the product
            a = torch.addmm(bias, a, weight.t(), beta=2, alpha=2, out=slot).sigmoid_()
            a = a.mul_(2).sub_(1)
        else:
            a = torch.addmm(bias, a, weight.t(), out=slot).tanh_()
        saved.append(a)
    out = _mm(a, params[2 * n_hidden].t())
    if last_bias:
        out = out + params[-1]
    return out, saved


def mlp_backward(
    grad: Tensor,
    activations: Sequence[Tensor],
    params: Sequence[Tensor],
    last_bias: bool,
    grads: list[Tensor | None],
    need_input: bool,
) -> Tensor | None:
    """Backpropagates ``grad`` (of the output) through one evaluation: adds the parameter
    gradients into ``grads`` (``None`` entries are set; entries for parameters that need none
    must be ``False``) and returns the input gradient (``None`` unless ``need_input``)."""

    def add(i: int, value: Tensor) -> None:
        grads[i] = value if grads[i] is None else grads[i].add_(value)

    n_hidden = len(activations) - 1
    a = activations[-1]
    w_index = 2 * n_hidden
    if grads[w_index] is not False:
        add(w_index, grad.t() @ a)
    if last_bias and grads[-1] is not False:
        add(len(params) - 1, grad.sum(0))
    g = grad @ params[w_index]
    for i in reversed(range(n_hidden)):
        y, below = activations[i + 1], activations[i]
        g = torch.ops.aten.tanh_backward(g, y)
        weight_i, bias_i = 2 * i, 2 * i + 1
        if grads[weight_i] is not False:  # g^T below, as (below^T g)^T for a narrow input
            narrow = below.shape[1] <= _NARROW
            add(weight_i, (below.t() @ g).t() if narrow else g.t() @ below)
        if grads[bias_i] is not False:
            add(bias_i, g.sum(0))
        if i > 0 or need_input:
            g = _mm(g, params[weight_i])
    return g if need_input else None


def _grad_slots(needs: Sequence[bool]) -> list[Tensor | None]:
    return [None if need else False for need in needs]  # type: ignore[misc]


def _finish(grads: list) -> list[Tensor | None]:
    return [None if g is False else g for g in grads]


def save_rollout(
    ctx,
    t: Tensor,
    params: Sequence[Tensor],
    saved: Sequence[Tensor],
    store: RolloutActivations | None = None,
) -> None:
    """What a fused rollout node's backward needs, as autograd saved tensors (freed after the
    backward pass unless retained): the time grid, the parameters and every field evaluation's
    activations in order; the ``store`` they were written into goes back to its pool with
    ``ctx``."""
    ctx.save_for_backward(t, *params, *saved)
    ctx.n_params = len(params)
    if store is not None:
        store.lease_to(ctx)


def saved_rollout(ctx, evals_per_step: int) -> tuple[Tensor, tuple[Tensor, ...], list]:
    """The steps ``dt`` ``(B, S)``, the parameters and the activations of each field evaluation
    (``evals_per_step`` per step, in order) that :func:`save_rollout` kept."""
    tensors = ctx.saved_tensors
    t, params, flat = tensors[0], tensors[1 : 1 + ctx.n_params], tensors[1 + ctx.n_params :]
    dt = t.diff(dim=1)
    per_eval = len(flat) // (evals_per_step * dt.shape[1])
    return dt, params, [flat[i : i + per_eval] for i in range(0, len(flat), per_eval)]


class TanhMLPFunction(torch.autograd.Function):
    """``Linear -> tanh -> ... -> Linear`` as one node (see the module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor, fast_tanh: bool, last_bias: bool, *params: Tensor) -> Tensor:
        out, saved = mlp_forward(x, params, last_bias, fast_tanh)
        ctx.save_for_backward(*saved, *params)
        ctx.n_saved, ctx.last_bias = len(saved), last_bias
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        tensors = ctx.saved_tensors
        activations, params = tensors[: ctx.n_saved], tensors[ctx.n_saved :]
        grads = _grad_slots(ctx.needs_input_grad[3:])
        grad_x = mlp_backward(
            grad.contiguous(), activations, params, ctx.last_bias, grads, ctx.needs_input_grad[0]
        )
        return (grad_x, None, None, *_finish(grads))


def recorded_evaluation(
    params: Sequence[Tensor],
    last_bias: bool,
    fast_tanh: bool,
    time_augmented: bool,
    saved: list[Tensor] | None,
    store: RolloutActivations | None,
) -> Callable[[Tensor, Tensor], Tensor]:
    """``evaluate(t, x)``: the MLP field at ``x`` (``[x, t]`` when ``time_augmented``) by
    :func:`mlp_forward`, each evaluation's activations appended to ``saved`` (unless ``None``)
    in order and written into ``store`` when given; what a fused rollout hands the
    integrators' step functions."""

    def evaluate(t: Tensor, x: Tensor) -> Tensor:
        if time_augmented:
            x = torch.cat([x, t.reshape(-1, 1)], dim=1)
        out, acts = mlp_forward(x, params, last_bias, fast_tanh, store)
        if saved is not None:
            saved.extend(acts)
        return out

    return evaluate


def leapfrog_forward(x0, t, n, fast_tanh, last_bias, params, keep=True, store=None):
    """The kick-drift-kick rollout ``(B, S, D)`` (:func:`~pl_pac_trs.trs.integrators.leapfrog_step`
    on the MLP) and, with ``keep``, the activations of its three field evaluations per step in
    order (what the backward pass needs; a no-grad rollout keeps none), written into ``store``
    (:class:`~pl_pac_trs.trs.fused.activation_pool.RolloutActivations`, three evaluations per
    step) when given."""
    saved: list[Tensor] = []
    evaluate = recorded_evaluation(
        params, last_bias, fast_tanh, False, saved if keep else None, store
    )
    start = (x0[:, :n], x0[:, n:], x0)
    return march(partial(leapfrog_step, evaluate, n), start, t, itemgetter(2)), saved


class LeapfrogTanhMLPFunction(torch.autograd.Function):
    """A whole kick-drift-kick rollout of an autonomous tanh-MLP field as one autograd node.

    The same arithmetic as :class:`~pl_pac_trs.trs.Leapfrog`'s generic path with the field
    evaluated by :func:`mlp_forward`; the backward pass is the exact reverse-mode derivative of
    the discrete scheme (the leapfrog's adjoint), written out, so no autograd graph of the
    hundreds of small per-step operations is recorded. Gradients reach the parameters and
    ``x0``; the time grid is treated as constant.
    """

    @staticmethod
    def forward(ctx, x0, t, n, fast_tanh, last_bias, *params):
        store = rollout_activations(3 * (t.shape[1] - 1), x0, params, last_bias)
        out, saved = leapfrog_forward(x0, t, n, fast_tanh, last_bias, params, store=store)
        save_rollout(ctx, t, params, saved, store)
        ctx.n, ctx.last_bias = n, last_bias
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        n, last_bias = ctx.n, ctx.last_bias
        dt, params, acts = saved_rollout(ctx, 3)
        half = 0.5 * dt
        grads = _grad_slots(ctx.needs_input_grad[5:])
        grad_out = grad_out.contiguous()
        d = grad_out.shape[2]
        gq = torch.zeros_like(grad_out[:, 0, :n])
        gp = torch.zeros_like(grad_out[:, 0, n:])
        zq, zp = torch.zeros_like(gq), torch.zeros_like(gp)
        for k in reversed(range(dt.shape[1])):
            h, hh = dt[:, k : k + 1], half[:, k : k + 1]
            acts_a, acts_b, acts_c = acts[3 * k : 3 * k + 3]
            gq = gq + grad_out[:, k, :n]
            gp = gp + grad_out[:, k, n:]
            # p2 = p1 + hh f(q1, p1)_p
            gx = mlp_backward(torch.cat([zq, hh * gp], 1), acts_c, params, last_bias, grads, True)
            gq, gp = gq + gx[:, :n], gp + gx[:, n:d]
            # q1 = q0 + h f(q0, p1)_q
            gx = mlp_backward(torch.cat([h * gq, zp], 1), acts_b, params, last_bias, grads, True)
            gq, gp = gq + gx[:, :n], gp + gx[:, n:d]
            # p1 = p0 + hh f(q0, p0)_p
            need = k > 0 or ctx.needs_input_grad[0]
            gx = mlp_backward(torch.cat([zq, hh * gp], 1), acts_a, params, last_bias, grads, need)
            if gx is not None:
                gq, gp = gq + gx[:, :n], gp + gx[:, n:d]
        grad_x0 = torch.cat([gq, gp], 1) if ctx.needs_input_grad[0] else None
        return (grad_x0, None, None, None, None, *_finish(grads))


def tanh_mlp_leapfrog(
    net: nn.Sequential, x0: Tensor, t: Tensor, position_dim: int, fast_tanh: bool = False
) -> Tensor:
    """The leapfrog rollout ``(B, S, D)`` of the autonomous field ``net`` (:func:`is_tanh_mlp`)
    from ``x0`` ``(B, D)`` along ``t`` ``(B, S + 1)`` as one autograd node
    (:class:`LeapfrogTanhMLPFunction`); ``t`` must not require gradients."""
    params, last_bias = mlp_params(net)
    if not torch.is_grad_enabled():  # the same arithmetic, no activations kept
        return leapfrog_forward(x0, t, int(position_dim), fast_tanh, last_bias, params, False)[0]
    return LeapfrogTanhMLPFunction.apply(
        x0, t, int(position_dim), bool(fast_tanh), last_bias, *params
    )


def tanh_mlp(net: nn.Sequential, x: Tensor, fast_tanh: bool = False) -> Tensor:
    """Evaluate a tanh MLP (:func:`is_tanh_mlp`) on ``x`` ``(B, in)`` as one autograd node.

    Args:
        net: ``Linear, Tanh, ..., Linear`` (hidden layers with biases; the last with or without).
        x: inputs of shape ``(B, in_features)``.
        fast_tanh: ``tanh(z) = 2 sigmoid(2z) - 1`` (faster on CPU, absolute error < 2.5e-7).

    Returns:
        ``net(x)`` (equal to it up to the order of floating-point sums, and the ``tanh``
        identity when ``fast_tanh``).

    Example:
        >>> from pl_pac_trs.trs import mlp
        >>> net = mlp(2, [64], 2)
        >>> x = torch.randn(5, 2)
        >>> torch.allclose(tanh_mlp(net, x), net(x), atol=1e-6)
        True
    """
    params, last_bias = mlp_params(net)
    return TanhMLPFunction.apply(x, bool(fast_tanh), last_bias, *params)


def mlp_params(net: nn.Sequential) -> tuple[list[Tensor], bool]:
    """The parameters of a tanh MLP (:func:`is_tanh_mlp`) in the order :func:`mlp_forward`
    takes them (``weight, bias`` per layer), and whether the last layer has a bias."""
    params = [p for layer in list(net)[::2] for p in _layer_params(layer)]
    return params, net[-1].bias is not None


def _layer_params(layer: nn.Linear) -> list[Tensor]:
    return [layer.weight] if layer.bias is None else [layer.weight, layer.bias]
