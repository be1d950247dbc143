"""Fused kernels: the tanh-MLP fields' evaluations and whole rollouts as single autograd nodes
with hand-written backward passes (CPU speed; measurements in ``docs/trs.md``).

Nothing here defines a scheme: the forward passes run the integrators' own step functions
(:func:`~pl_pac_trs.trs.integrators.leapfrog_step`, :func:`~pl_pac_trs.trs.integrators.rk4_step`)
on the MLP's evaluation, and the backward passes are the exact reverse-mode derivatives of those
steps, tested against autograd through the integrators' step loops. A field offers them through
:meth:`~pl_pac_trs.trs.VectorField.fused_rollout`; a reader of the integrators can skip this
package.

* :mod:`~pl_pac_trs.trs.fused.tanh_mlp`: one MLP evaluation, and the leapfrog rollout;
* :mod:`~pl_pac_trs.trs.fused.tanh_mlp_rk4`: the RK4 rollout;
* :mod:`~pl_pac_trs.trs.fused.tanh_grad`: the input gradient of a scalar MLP (HODEN);
* :mod:`~pl_pac_trs.trs.fused.activation_pool`: reused activation blocks of rollouts.
"""
