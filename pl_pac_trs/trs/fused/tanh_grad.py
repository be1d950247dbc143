"""The input gradient of a scalar tanh MLP in closed form, as one autograd node.

A HODEN field is the gradient of two scalar tanh MLPs (``dq/dt = dK/dp``, ``dp/dt = -dV/dq``).
Taken by :func:`torch.autograd.grad` with ``create_graph=True``, every field evaluation records
the MLP's backward graph, and training then differentiates that graph again (a double
backward through generic ``tanh_backward`` / ``mm`` nodes). For

``a_1 = tanh(W_1 x + b_1), ..., a_L = tanh(W_L a_{L-1} + b_L), H = w . a_L (+ c)``

the gradient is a plain forward computation that reuses the ``tanh`` outputs
(``s_i = 1 - a_i^2``):

``g_L = s_L * w``, ``g_i = s_i * (g_{i+1} W_{i+1})``, ``dH/dx = g_1 W_1``.

:func:`tanh_mlp_input_grad` evaluates it as one autograd node
(:class:`TanhMLPInputGradFunction`) whose backward is that formula's exact reverse-mode
derivative written out (a Hessian-vector product plus the parameter gradients), so a training
step takes one ordinary backward pass. Only the first ``n`` input columns are differentiated
(the others, e.g. an appended time column, are still inputs: their gradient is returned). The
values and gradients are those of autograd's double backward up to the order of floating-point
sums (tested to ``1e-10`` relative in float64). The node is differentiable once
(``once_differentiable``): derivatives of the backward pass (third derivatives of ``H``) need
the plain autograd path (:class:`~pl_pac_trs.trs.HODENField` with ``fused=False``).

Cost: the same six ``B x h x h`` matrix products per evaluation of a two-hidden-layer MLP as
autograd's double backward (two forward, four backward), which are the floor of an exact
gradient; what the node saves are the generic double-backward nodes' elementwise passes,
temporaries and saved tensors (it keeps ``x``, the ``a_i`` and the ``c_i`` below, and
recomputes the ``g_i``). ``fast_tanh=True`` (opt-in, not exact) computes ``tanh(z) = 2
sigmoid(2z) - 1`` as :func:`~pl_pac_trs.trs.fused.tanh_mlp.mlp_forward` does, PyTorch's CPU
``sigmoid`` being much faster than its ``tanh`` (measurements: ``docs/trs.md``, Performance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from pl_pac_trs.trs.fused.tanh_mlp import _NARROW, _mm, is_tanh_mlp

__all__ = [
    "InputGradSaved",
    "TanhMLPInputGradFunction",
    "input_grad_backward",
    "input_grad_forward",
    "is_scalar_tanh_mlp",
    "scalar_mlp_params",
    "tanh_mlp_input_grad",
]


def is_scalar_tanh_mlp(net: nn.Module) -> bool:
    """Whether ``net`` is a tanh MLP (:func:`~pl_pac_trs.trs.fused.tanh_mlp.is_tanh_mlp`) with
    at least one hidden layer and a single output, whose input gradient :func:`tanh_mlp_input_grad`
    computes."""
    return is_tanh_mlp(net) and len(net) >= 3 and net[-1].out_features == 1


def scalar_mlp_params(net: nn.Sequential) -> list[Tensor]:
    """``[W_1, b_1, ..., W_L, b_L, w_out]`` of a scalar tanh MLP (:func:`is_scalar_tanh_mlp`);
    an output bias is left out (it does not change the gradient)."""
    layers = list(net)[::2]
    return [p for layer in layers[:-1] for p in (layer.weight, layer.bias)] + [layers[-1].weight]


_tanh_backward = torch.ops.aten.tanh_backward  # grad * (1 - y^2) in one pass
_tanh_backward_out = torch.ops.aten.tanh_backward.grad_input


def _narrow(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for a narrow ``b`` (a few columns): a matrix-vector product for one column,
    else :func:`~pl_pac_trs.trs.fused.tanh_mlp._mm`'s transposed product (both measured faster on
    CPU than the plain GEMM with a narrow result)."""
    return a @ b if b.shape[1] == 1 else _mm(a, b)


class InputGradSaved(NamedTuple):
    """What the backward of :func:`input_grad_forward` needs: the activations ``[x, a_1, ...,
    a_L]`` and ``c_i = g_{i+1} W_{i+1}`` for ``i < L`` (the ``g_i`` are recomputed from them)."""

    acts: list[Tensor]
    cs: list[Tensor]


def input_grad_forward(
    x: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    w_out: Tensor,
    n: int,
    fast_tanh: bool = False,
) -> tuple[Tensor, InputGradSaved]:
    """``dH/dx[:, :n]`` of ``H = w_out . a_L`` and the tensors its backward needs.

    Args:
        x: inputs ``(B, in)``.
        weights: hidden-layer weights ``W_1 (h_1, in), ..., W_L (h_L, h_{L-1})``, ``L >= 1``.
        biases: hidden-layer biases ``b_1, ..., b_L``.
        w_out: output weight ``(1, h_L)``.
        n: number of leading input columns to differentiate.
        fast_tanh: ``tanh(z) = 2 sigmoid(2z) - 1`` (as
            :func:`~pl_pac_trs.trs.fused.tanh_mlp.mlp_forward`; absolute error below ``2.5e-7`` in
            float32, not exact).

    Returns:
        ``(grad, saved)``: the gradient ``(B, n)`` and an :class:`InputGradSaved`.
    """
    acts = [x]
    a = x
    for weight, bias in zip(weights, biases, strict=True):
        if fast_tanh:
            a = torch.addmm(bias, a, weight.t(), beta=2, alpha=2).sigmoid_().mul_(2).sub_(1)
        else:
            a = torch.addmm(bias, a, weight.t()).tanh_()
        acts.append(a)
    g = _tanh_backward(w_out.expand_as(a), a)  # g_L = s_L * w_out
    cs: list[Tensor] = []
    for i in range(len(weights) - 1, 0, -1):  # c_{i-1} = g_i W_i, g_{i-1} = s_{i-1} * c_{i-1}
        c = g @ weights[i]
        cs.insert(0, c)
        g = _tanh_backward(c, acts[i])
    w_in = weights[0] if n == weights[0].shape[1] else weights[0][:, :n]
    return _narrow(g, w_in), InputGradSaved(acts, cs)


def input_grad_backward(
    grad: Tensor,
    saved: InputGradSaved,
    weights: Sequence[Tensor],
    w_out: Tensor,
    n: int,
    need_x: bool,
    need_params: Sequence[bool],
) -> tuple[Tensor | None, list[Tensor | None]]:
    """Backpropagates ``grad`` (of the output ``dH/dx[:, :n]``) through
    :func:`input_grad_forward`.

    Args:
        grad: the incoming gradient ``(B, n)``.
        saved: the forward's :class:`InputGradSaved`.
        weights: ``W_1, ..., W_L``.
        w_out: ``(1, h_L)``.
        n: differentiated input columns.
        need_x: whether the input gradient is needed.
        need_params: which of ``W_1, b_1, ..., W_L, b_L, w_out`` need a gradient.

    Returns:
        ``(grad_x, [grad_W_1, grad_b_1, ..., grad_W_L, grad_b_L, grad_w_out])``, ``None`` where
        not needed.
    """
    acts, cs = saved
    n_layers = len(weights)
    out: list[Tensor | None] = [None] * (2 * n_layers + 1)

    def g_of(i: int) -> Tensor:  # g_i (0-based) = s_i * c_i, recomputed
        c = cs[i] if i < n_layers - 1 else w_out.expand_as(acts[i + 1])
        return _tanh_backward(c, acts[i + 1])

    # 1. the gradient chain, upwards (0-based): grad = g_0 W_0[:, :n], g_i = s_i * c_i,
    # c_i = g_{i+1} W_{i+1}, c_{L-1} = w_out. Each s_i = 1 - a_i^2 also gets the gradient
    # -2 a_i (dg_i * c_i); ``chain`` holds a_i * dg_i * c_i (the -2 is applied below).
    w_in = weights[0] if n == weights[0].shape[1] else weights[0][:, :n]
    w0_chain = (grad.t() @ g_of(0)).t() if need_params[0] else None  # g_0^T grad, (h_0, n)
    dg = grad @ w_in.t()
    chain: list[Tensor] = []
    for i in range(n_layers):
        a = acts[i + 1]
        dc = _tanh_backward(dg, a)  # d/dc_i
        if i < n_layers - 1:
            if need_params[2 * i + 2]:
                out[2 * i + 2] = g_of(i + 1).t() @ dc  # c_i = g_{i+1} W_{i+1}
            chain.append(dg.mul_(cs[i]).mul_(a))
            dg = dc @ weights[i + 1].t()
        else:
            if need_params[-1]:
                out[-1] = dc.sum(0, keepdim=True)
            chain.append(dg.mul_(w_out).mul_(a))
    # 2. the activations, downwards, with du = -(1/2) d/du_i (u_i = W_i a_{i-1} + b_i): the
    # factor -2 goes into the (small) parameter and input gradients only
    da = chain[-1]
    for i in range(n_layers - 1, -1, -1):
        du = _tanh_backward_out(da, acts[i + 1], grad_input=da)
        below = acts[i]
        if need_params[2 * i + 1]:
            out[2 * i + 1] = du.sum(0).mul_(-2.0)
        if need_params[2 * i]:
            if i > 0:
                chained = out[2 * i]
                if chained is None:
                    out[2 * i] = torch.mm(du.t(), below).mul_(-2.0)
                else:
                    out[2 * i] = chained.addmm_(du.t(), below, alpha=-2.0)
            else:  # a narrow input: (below^T du)^T
                w0 = (below.t() @ du).t().mul_(-2.0) if below.shape[1] <= _NARROW else None
                w0 = torch.mm(du.t(), below).mul_(-2.0) if w0 is None else w0
                if w0_chain is not None:
                    (w0 if n == w0.shape[1] else w0[:, :n]).add_(w0_chain)
                out[0] = w0
        if i > 0:
            da = chain[i - 1].addmm_(du, weights[i])
        elif need_x:
            return _narrow(du, weights[0]).mul_(-2.0), out
    return None, out


class TanhMLPInputGradFunction(torch.autograd.Function):
    """``x -> dH/dx[:, :n]`` of a scalar tanh MLP ``H`` as one node (see the module docstring).

    ``apply(x, n, fast_tanh, *params)`` with ``params = [W_1, b_1, ..., W_L, b_L, w_out]``
    (:func:`scalar_mlp_params`).
    """

    @staticmethod
    def forward(ctx, x: Tensor, n: int, fast_tanh: bool, *params: Tensor) -> Tensor:
        n_layers = (len(params) - 1) // 2
        weights, biases = params[0 : 2 * n_layers : 2], params[1 : 2 * n_layers : 2]
        grad, saved = input_grad_forward(x, weights, biases, params[-1], n, fast_tanh)
        ctx.save_for_backward(*saved.acts, *saved.cs, *params)
        ctx.n, ctx.n_layers = n, n_layers
        return grad

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        n, n_layers = ctx.n, ctx.n_layers
        tensors = list(ctx.saved_tensors)
        saved = InputGradSaved(tensors[: n_layers + 1], tensors[n_layers + 1 : 2 * n_layers])
        params = tensors[2 * n_layers :]
        weights = params[0 : 2 * n_layers : 2]
        grad_x, grads = input_grad_backward(
            grad.contiguous(),
            saved,
            weights,
            params[-1],
            n,
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[3:],
        )
        return (grad_x, None, None, *grads)


def tanh_mlp_input_grad(
    net: nn.Sequential, x: Tensor, n: int | None = None, fast_tanh: bool = False
) -> Tensor:
    """``dH/dx[:, :n]`` of the scalar tanh MLP ``H = net`` (:func:`is_scalar_tanh_mlp`) at ``x``.

    Args:
        net: ``Linear, Tanh, ..., Linear`` with one output.
        x: inputs ``(B, in_features)``.
        n: differentiate the first ``n`` columns (default all).
        fast_tanh: ``tanh(z) = 2 sigmoid(2z) - 1`` (faster on CPU; absolute error below
            ``2.5e-7`` in float32, so not exact: off by default).

    Returns:
        The gradient ``(B, n)``, equal to ``torch.autograd.grad(net(x).sum(), x)[0][:, :n]`` up
        to the order of floating-point sums, as one autograd node with a hand-written backward.

    Example:
        >>> from pl_pac_trs.trs import mlp
        >>> net = mlp(2, [16], 1).double()
        >>> x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
        >>> (ref,) = torch.autograd.grad(net(x).sum(), x)
        >>> torch.allclose(tanh_mlp_input_grad(net, x), ref)
        True
    """
    n = x.shape[1] if n is None else int(n)
    return TanhMLPInputGradFunction.apply(x, n, bool(fast_tanh), *scalar_mlp_params(net))
