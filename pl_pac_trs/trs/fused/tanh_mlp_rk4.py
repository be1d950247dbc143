"""A whole RK4 rollout of a tanh-MLP field as one autograd node.

The RK4 counterpart of :class:`~pl_pac_trs.trs.fused.tanh_mlp.LeapfrogTanhMLPFunction`: exps III and
VI roll tanh MLPs (``[x, t] -> 100 -> 100 -> 2``, time-augmented; ``3 -> 200 -> 200 -> 3``) out with
classical Runge-Kutta, four field evaluations per step. Left to autograd, every step
records about twenty small nodes (the stage sums, the time columns of a time-augmented field,
the four MLPs); here the forward pass
keeps only the MLPs' ``tanh`` outputs and the backward pass is the exact reverse-mode derivative
of the discrete scheme, written out with :func:`~pl_pac_trs.trs.fused.tanh_mlp.mlp_backward`:

for ``x' = x + h/6 (k1 + 2 k2 + 2 k3 + k4)`` with ``k1 = f(x)``, ``k2 = f(x + h/2 k1)``,
``k3 = f(x + h/2 k2)``, ``k4 = f(x + h k3)`` and ``g`` the gradient of ``x'``,

``g_k4 = h/6 g``, ``g_k3 = h/3 g + h J4^T g_k4``, ``g_k2 = h/3 g + h/2 J3^T g_k3``,
``g_k1 = h/6 g + h/2 J2^T g_k2`` and ``g_x = g + sum_i J_i^T g_ki``,

where ``J_i^T`` is the MLP's vector-Jacobian product at stage ``i`` (a time-augmented field's
time column gets no gradient: the grid is treated as constant, as in the leapfrog node).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from pl_pac_trs.trs.fused.tanh_mlp import (
    _finish,
    _grad_slots,
    mlp_backward,
    mlp_params,
    recorded_evaluation,
    rollout_activations,
    save_rollout,
    saved_rollout,
)
from pl_pac_trs.trs.integrators import march, rk4_step

__all__ = ["RK4TanhMLPFunction", "rk4_forward", "tanh_mlp_rk4"]


def rk4_forward(x0, t, time_augmented, fast_tanh, last_bias, params, keep=True, store=None):
    """The rollout ``(B, S, D)`` (:func:`~pl_pac_trs.trs.integrators.rk4_step` on the MLP) and,
    with ``keep``, every stage's activations in order (what the backward pass needs; a no-grad
    rollout keeps none), written into ``store``
    (:class:`~pl_pac_trs.trs.fused.activation_pool.RolloutActivations`, four evaluations per
    step) when given."""
    saved: list[Tensor] = []
    evaluate = recorded_evaluation(
        params, last_bias, fast_tanh, time_augmented, saved if keep else None, store
    )
    return march(partial(rk4_step, evaluate), x0, t), saved


class RK4TanhMLPFunction(torch.autograd.Function):
    """Classical RK4 over every interval of ``t`` of the field ``x -> mlp(x)`` (or
    ``x -> mlp([x, t])`` when time-augmented) as one node; gradients reach the parameters and
    ``x0``, not ``t``. The same arithmetic, in the same order, as
    :class:`~pl_pac_trs.trs.RK4`'s step on :class:`~pl_pac_trs.trs.ODENField`."""

    @staticmethod
    def forward(ctx, x0, t, time_augmented, fast_tanh, last_bias, *params):
        store = rollout_activations(4 * (t.shape[1] - 1), x0, params, last_bias)
        out, saved = rk4_forward(x0, t, time_augmented, fast_tanh, last_bias, params, store=store)
        save_rollout(ctx, t, params, saved, store)
        ctx.last_bias, ctx.d = last_bias, x0.shape[1]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        last_bias, d = ctx.last_bias, ctx.d
        dt, params, acts = saved_rollout(ctx, 4)
        grads = _grad_slots(ctx.needs_input_grad[5:])
        grad_out = grad_out.contiguous()
        g = torch.zeros_like(grad_out[:, 0])

        def vjp(gk: Tensor, stage: Sequence[Tensor], need: bool = True) -> Tensor | None:
            gin = mlp_backward(gk, stage, params, last_bias, grads, need)
            return None if gin is None else gin[:, :d]

        for k in reversed(range(dt.shape[1])):
            h = dt[:, k : k + 1]
            hh, h6 = 0.5 * h, h / 6.0
            a1, a2, a3, a4 = acts[4 * k : 4 * k + 4]
            g = g + grad_out[:, k]
            gx = g
            gin = vjp(h6 * g, a4)
            gx = gx + gin
            gin = vjp(2.0 * h6 * g + h * gin, a3)
            gx = gx + gin
            gin = vjp(2.0 * h6 * g + hh * gin, a2)
            gx = gx + gin
            need = k > 0 or ctx.needs_input_grad[0]
            gin = vjp(h6 * g + hh * gin, a1, need)
            g = gx if gin is None else gx + gin
        grad_x0 = g if ctx.needs_input_grad[0] else None
        return (grad_x0, None, None, None, None, *_finish(grads))


def tanh_mlp_rk4(
    net: nn.Sequential, x0: Tensor, t: Tensor, time_augmented: bool = False, fast_tanh: bool = False
) -> Tensor:
    """The RK4 rollout ``(B, S, D)`` of the field ``net`` (a tanh MLP,
    :func:`~pl_pac_trs.trs.fused.tanh_mlp.is_tanh_mlp`; with ``time_augmented`` its last input is
    the time) from ``x0`` ``(B, D)`` along ``t`` ``(B, S + 1)`` as one autograd node
    (:class:`RK4TanhMLPFunction`); ``t`` must not require gradients."""
    params, last_bias = mlp_params(net)
    if not torch.is_grad_enabled():  # the same arithmetic, no activations kept
        return rk4_forward(x0, t, time_augmented, fast_tanh, last_bias, params, keep=False)[0]
    return RK4TanhMLPFunction.apply(
        x0, t, bool(time_augmented), bool(fast_tanh), last_bias, *params
    )
