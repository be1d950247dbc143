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
  out of the matrix product (``alpha = beta = 2``): PyTorch's CPU ``sigmoid`` is several times
  faster than its ``tanh``. The absolute error against ``torch.tanh`` stays below ``2.5e-7`` in
  float32; the relative error near zero is larger (``tanh`` is then close to its argument),
  which is why it is an option.

The backward pass is differentiable once (``once_differentiable``): second derivatives through
the field (for a Hamiltonian or a Jacobian penalty) need the plain module
(:class:`~pl_pac_trs.trs.ODENField` with ``fused=False``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["TanhMLPFunction", "is_tanh_mlp", "tanh_mlp"]


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
    ``b^T`` contiguous: the CPU GEMM is several times faster with the wide side as columns.
    The result is then a transposed view."""
    if b.shape[1] <= _NARROW < a.shape[0]:
        return (b.t().contiguous() @ a.t()).t()
    return a @ b


class TanhMLPFunction(torch.autograd.Function):
    """``Linear -> tanh -> ... -> Linear`` as one node (see the module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor, fast_tanh: bool, last_bias: bool, *params: Tensor) -> Tensor:
        n_hidden = (len(params) - 1 - int(last_bias)) // 2
        saved: list[Tensor] = [x]
        a = x
        for i in range(n_hidden):
            weight, bias = params[2 * i], params[2 * i + 1]
            if fast_tanh:
                a = torch.addmm(bias, a, weight.t(), beta=2, alpha=2).sigmoid_()
                a = a.mul_(2).sub_(1)
            else:
                a = torch.addmm(bias, a, weight.t()).tanh_()
            saved.append(a)
        weight = params[2 * n_hidden]
        out = _mm(a, weight.t())
        if last_bias:
            out = out + params[-1]
        ctx.save_for_backward(*saved, *params)
        ctx.n_hidden, ctx.last_bias = n_hidden, last_bias
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        n_hidden, last_bias = ctx.n_hidden, ctx.last_bias
        tensors = ctx.saved_tensors
        activations, params = tensors[: n_hidden + 1], tensors[n_hidden + 1 :]
        grads: list[Tensor | None] = [None] * len(params)
        needs = ctx.needs_input_grad[3:]
        grad = grad.contiguous()
        a = activations[-1]
        w_index = 2 * n_hidden
        if needs[w_index]:
            grads[w_index] = grad.t() @ a
        if last_bias and needs[-1]:
            grads[-1] = grad.sum(0)
        g = grad @ params[w_index]
        for i in reversed(range(n_hidden)):
            y, below = activations[i + 1], activations[i]
            g = torch.ops.aten.tanh_backward(g, y)
            weight_i, bias_i = 2 * i, 2 * i + 1
            if needs[weight_i]:  # g^T below, as (below^T g)^T when the layer's input is narrow
                narrow = below.shape[1] <= _NARROW
                grads[weight_i] = (below.t() @ g).t() if narrow else g.t() @ below
            if needs[bias_i]:
                grads[bias_i] = g.sum(0)
            if i > 0 or ctx.needs_input_grad[0]:
                g = _mm(g, params[weight_i])
        grad_x = g if ctx.needs_input_grad[0] else None
        return (grad_x, None, None, *grads)


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
    params: Sequence[Tensor] = [p for layer in list(net)[::2] for p in _layer_params(layer)]
    last_bias = net[-1].bias is not None
    return TanhMLPFunction.apply(x, bool(fast_tanh), last_bias, *params)


def _layer_params(layer: nn.Linear) -> list[Tensor]:
    return [layer.weight] if layer.bias is None else [layer.weight, layer.bias]
