"""Vector fields ``f(t, x)`` for neural ODEs: the ODEN MLP and the separable HODEN Hamiltonian
(both optionally time-augmented).

Both are plain :class:`torch.nn.Module`\\ s with torchdiffeq's call signature ``field(t, x)``:
``x`` of shape ``(B, D)``, ``t`` a scalar or a ``(B,)`` tensor; they return ``dx/dt`` of shape
``(B, D)``. Any user module with the same signature can be used in their place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch.core.mixins import HyperparametersMixin
from torch import Tensor, nn

from pl_pac_trs.trs.fused.tanh_grad import is_scalar_tanh_mlp, tanh_mlp_input_grad
from pl_pac_trs.trs.fused.tanh_mlp import is_tanh_mlp, tanh_mlp, tanh_mlp_leapfrog
from pl_pac_trs.trs.fused.tanh_mlp_rk4 import tanh_mlp_rk4
from pl_pac_trs.trs.vector_field import VectorField

__all__ = ["DEFAULT_INIT", "INITS", "HODENField", "ODENField", "init_linear", "mlp"]

#: Weight initialisations of :func:`mlp`: ``"reference"`` is the reference code's (Keras
#: ``Dense`` defaults: Glorot-uniform weights, bound ``sqrt(6 / (fan_in + fan_out))``, zero
#: biases); ``"torch"`` is PyTorch's :class:`~torch.nn.Linear` default (Kaiming-uniform with
#: ``a = sqrt(5)``, biases uniform in ``+-1/sqrt(fan_in)``).
INITS = ("reference", "torch")
#: The default of :func:`mlp`, :class:`ODENField` and :class:`HODENField`, chosen on validation
#: loss over exps I-VI and two user systems (``docs/trs.md``, "Initialisation"): PyTorch's
#: default won more of the comparisons (the strongly nonlinear systems); the reproduction
#: configs state ``init: reference`` explicitly.
DEFAULT_INIT = "torch"


def _check_init(init: str, owner: str) -> str:
    if init not in INITS:
        raise ValueError(f"{owner}: init must be one of {list(INITS)}, got {init!r}")
    return init


def init_linear(layer: nn.Linear, init: str = DEFAULT_INIT) -> nn.Linear:
    """Re-initialises ``layer`` in place by ``init`` (one of :data:`INITS`) and returns it.

    Args:
        layer: the layer.
        init: ``"reference"`` (Glorot-uniform weights, zero bias) or ``"torch"``
            (:meth:`torch.nn.Linear.reset_parameters`).

    Raises:
        ValueError: ``init`` is not one of :data:`INITS`.
    """
    _check_init(init, "init_linear")
    if init == "torch":
        layer.reset_parameters()
    else:
        nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return layer


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    last_bias: bool = False,
    init: str = DEFAULT_INIT,
) -> nn.Sequential:
    """A tanh MLP ``in_dim -> hidden... -> out_dim``; the last layer has no bias by default.

    Args:
        in_dim: input features.
        hidden: widths of the hidden layers (may be empty: a linear map).
        out_dim: output features.
        last_bias: whether the output layer has a bias (the reference code has none).
        init: weight initialisation, one of :data:`INITS` (see there).

    Raises:
        ValueError: a dimension is not positive, or ``init`` is unknown.

    Example:
        >>> net = mlp(2, [1000], 2, init="reference")  # the reference code's
        >>> float(net[0].weight.abs().max()) <= (6 / (2 + 1000)) ** 0.5, bool(net[0].bias.any())
        (True, False)
    """
    _check_init(init, "mlp")
    hidden = [int(h) for h in hidden]
    if in_dim < 1 or out_dim < 1 or any(h < 1 for h in hidden):
        raise ValueError(
            f"mlp: dimensions must be positive, got in_dim={in_dim}, hidden={hidden}, "
            f"out_dim={out_dim}"
        )

    def linear(fan_in: int, fan_out: int, bias: bool = True) -> nn.Linear:
        layer = nn.Linear(fan_in, fan_out, bias=bias)  # constructed with PyTorch's default
        return init_linear(layer, init) if init != "torch" else layer

    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [linear(width, h), nn.Tanh()]
        width = h
    layers.append(linear(width, out_dim, bias=last_bias))
    return nn.Sequential(*layers)


def fusable_dtypes(x: Tensor, params: Sequence[Tensor]) -> bool:
    """Whether the fused kernels may evaluate a field on ``x``: no autocast region is active on
    ``x``'s device (autocast decides each operation's dtype, which the hand-written nodes do not
    follow) and ``x`` has the parameters' dtype. Otherwise the fields take the plain autograd
    path, which autocast handles, so mixed precision gets the plain path's numbers."""
    if torch.is_autocast_enabled(x.device.type):
        return False
    return all(p.dtype == x.dtype for p in params)


def _time_column(t: Tensor | float, x: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(-1, 1).expand(x.shape[0], 1)


class _TanhMLPField(VectorField, HyperparametersMixin):
    """What both fields share: state dimension, time augmentation, init and the fused path.

    Each field saves its constructor arguments (``hparams``), which is how
    :class:`~pl_pac_trs.trs.TRSODEN` writes it into its checkpoints as a ``class_path`` spec."""

    def __init__(
        self,
        owner: str,
        state_dim: int,
        time_augmented: bool,
        init: str,
        fused: bool,
        fast_tanh: bool,
    ) -> None:
        super().__init__()
        self.init = _check_init(init, owner)
        self.state_dim = int(state_dim)
        self.time_augmented = bool(time_augmented)
        self.fused = bool(fused)
        self.fast_tanh = bool(fast_tanh)

    @property
    def autonomous(self) -> bool:
        """Whether the field ignores ``t``."""
        return not self.time_augmented


class ODENField(_TanhMLPField):
    """ODEN vector field: a tanh MLP ``x -> dx/dt`` (or ``[x, t] -> dx/dt`` time-augmented).

    Args:
        state_dim: dimension ``D`` of the state.
        hidden: hidden layer widths (reference: ``(1000,)`` or ``(100, 100)``).
        time_augmented: feed the time as an extra input (non-autonomous systems, exp III).
        init: weight initialisation of the MLP, one of :data:`INITS` (``"reference"``:
            Glorot-uniform weights and zero biases, as the reference code; ``"torch"``: PyTorch's
            default).
        fused: evaluate the MLP as one autograd node with a hand-written backward
            (:func:`~pl_pac_trs.trs.fused.tanh_mlp.tanh_mlp`: the same values and gradients up to
            the order of floating-point sums, faster); ``False``: plain autograd, needed for second
            derivatives through the field.
        fast_tanh: with ``fused``, ``tanh(z) = 2 sigmoid(2z) - 1`` (faster on CPU; absolute
            error below 2.5e-7 in float32).
    """

    def __init__(
        self,
        state_dim: int,
        hidden: Sequence[int] = (1000,),
        time_augmented: bool = False,
        init: str = DEFAULT_INIT,
        fused: bool = True,
        fast_tanh: bool = True,
    ) -> None:
        if int(state_dim) < 1:
            raise ValueError(f"ODENField: state_dim must be >= 1, got {state_dim!r}")
        super().__init__("ODENField", state_dim, time_augmented, init, fused, fast_tanh)
        self.save_hyperparameters()
        self.net = mlp(self.state_dim + int(self.time_augmented), hidden, self.state_dim, init=init)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        if self.time_augmented:
            x = torch.cat([x, _time_column(t, x)], dim=-1)
        if self._fusable(x):
            return tanh_mlp(self.net, x, fast_tanh=self.fast_tanh)
        return self.net(x)

    def _fusable(self, x: Tensor) -> bool:
        """Whether the one-node paths apply: ``fused``, a batch ``(B, D)``, a tanh MLP net, and
        no autocast or dtype mismatch (:func:`fusable_dtypes`)."""
        return (
            self.fused
            and x.dim() == 2
            and is_tanh_mlp(self.net)
            and fusable_dtypes(x, (self.net[0].weight,))
        )

    def fused_rollout(
        self, scheme: str, x0: Tensor, t: Tensor, position_dim: int | None = None
    ) -> Tensor | None:
        """The whole rollout as one autograd node (:mod:`pl_pac_trs.trs.fused`): ``"leapfrog"``
        (autonomous fields; :func:`~pl_pac_trs.trs.fused.tanh_mlp.tanh_mlp_leapfrog`) and
        ``"rk4"`` (:func:`~pl_pac_trs.trs.fused.tanh_mlp_rk4.tanh_mlp_rk4`, time-augmented or
        not); ``None`` otherwise, when not ``fused``, or under autocast."""
        if not self._fusable(x0):
            return None
        if scheme == "leapfrog" and not self.time_augmented and position_dim is not None:
            return tanh_mlp_leapfrog(self.net, x0, t, position_dim, fast_tanh=self.fast_tanh)
        if scheme == "rk4":
            return tanh_mlp_rk4(self.net, x0, t, self.time_augmented, fast_tanh=self.fast_tanh)
        return None


class HODENField(_TanhMLPField):
    """HODEN: Hamiltonian field of a separable ``H(q, p) = K(p) + V(q)`` learned by two MLPs.

    ``dq/dt = dK/dp`` and ``dp/dt = -dV/dq``. With ``fused`` (the default) and ``K``, ``V`` the
    tanh MLPs this class builds, each derivative is computed in closed form as one autograd node
    with a hand-written backward (:func:`~pl_pac_trs.trs.fused.tanh_grad.tanh_mlp_input_grad`: the
    gradient of a tanh MLP written as a forward computation that reuses the ``tanh`` outputs), so
    training takes one ordinary backward pass instead of autograd's double backward; values and
    gradients equal the autograd path's up to the order of floating-point sums. Otherwise
    (``fused=False``, or nets replaced by other modules; see :meth:`closed_form`) the derivatives
    are taken by :func:`torch.autograd.grad` under a local :func:`torch.enable_grad`, the graph
    of the derivatives kept (``create_graph``) only when the caller has gradients enabled, i.e.
    when training. Both paths work in ``torch.no_grad()`` / eval rollouts.

    Time-augmented (``time_augmented=True``, non-autonomous systems, exp III as in the reference
    code): ``H(q, p, t) = K(p, t) + V(q, t)``, the time appended as an extra input feature of each
    MLP exactly as in :class:`ODENField`; the derivatives are still taken w.r.t. ``q`` and ``p``
    only. Such a field is not :attr:`separable` (:class:`~pl_pac_trs.trs.Leapfrog` then uses its
    generic path, which passes ``t``) and not :attr:`autonomous`.

    Args:
        state_dim: dimension ``D`` of the state ``[q, p]``.
        hidden: hidden widths of each of the two scalar MLPs.
        position_dim: number of position coordinates ``q`` (default ``state_dim // 2``).
        time_augmented: feed the time as an extra input of ``K`` and ``V``.
        init: weight initialisation of both MLPs, one of :data:`INITS`.
        fused: compute ``dK/dp`` and ``dV/dq`` in closed form as one autograd node each (see
            above); ``False``: plain autograd, needed for derivatives of the field's backward
            pass (e.g. a Jacobian penalty differentiated w.r.t. the parameters).
        fast_tanh: with ``fused``, ``tanh(z) = 2 sigmoid(2z) - 1`` (faster on CPU; absolute
            error below 2.5e-7 in float32). Off by default: unlike the closed form, it changes
            the numbers.
    """

    #: ``dq/dt`` depends on ``p`` only and ``dp/dt`` on ``q`` only: :meth:`separable_parts`
    #: offers :class:`Leapfrog` :meth:`velocity` / :meth:`force` (2 half-field evaluations per
    #: step instead of 3 full ones). ``False`` on time-augmented instances (that path calls
    #: ``velocity(p)`` / ``force(q)`` without a time); set it to ``False`` to force the generic
    #: path.
    separable = True

    def __init__(
        self,
        state_dim: int,
        hidden: Sequence[int] = (1000,),
        position_dim: int | None = None,
        time_augmented: bool = False,
        init: str = DEFAULT_INIT,
        fused: bool = True,
        fast_tanh: bool = False,
    ) -> None:
        super().__init__("HODENField", state_dim, time_augmented, init, fused, fast_tanh)
        state_dim = self.state_dim
        if position_dim is None:
            if state_dim % 2:
                raise ValueError(
                    f"HODENField: state_dim={state_dim} is odd; give position_dim explicitly"
                )
            position_dim = state_dim // 2
        if not 0 < int(position_dim) < state_dim:
            raise ValueError(
                f"HODENField: position_dim must be in [1, state_dim - 1] = [1, {state_dim - 1}], "
                f"got {position_dim!r}"
            )
        self.position_dim = int(position_dim)
        self.save_hyperparameters()
        extra = int(self.time_augmented)
        self.kinetic = mlp(state_dim - self.position_dim + extra, hidden, 1, init=init)
        self.potential = mlp(self.position_dim + extra, hidden, 1, init=init)
        if self.time_augmented:
            self.separable = False

    def _time(self, t: Tensor | float | None, z: Tensor) -> Tensor | None:
        """The time column ``(B, 1)`` for inputs ``z`` ``(B, d)``; ``None`` when autonomous."""
        if not self.time_augmented:
            return None
        if t is None:
            raise ValueError("HODENField: a time-augmented field needs the time t")
        return _time_column(t, z)

    @staticmethod
    def _eval(net: nn.Module, z: Tensor, tc: Tensor | None) -> Tensor:
        return net(z if tc is None else torch.cat([z, tc], dim=-1))

    def hamiltonian(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        """``H(x) = K(p) + V(q)`` (time-augmented: ``K(p, t) + V(q, t)``) of states ``(..., D)``,
        shape ``(...)``; ``t`` must broadcast to ``x.shape[:-1]`` (ignored when autonomous)."""
        q, p = x[..., : self.position_dim], x[..., self.position_dim :]
        tc = None
        if self.time_augmented:
            if t is None:
                raise ValueError("HODENField: a time-augmented field needs the time t")
            t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
            tc = torch.broadcast_to(t, x.shape[:-1])[..., None]
        return (self._eval(self.kinetic, p, tc) + self._eval(self.potential, q, tc)).squeeze(-1)

    def closed_form(self, net: nn.Module) -> bool:
        """Whether the derivative of ``net`` (:attr:`kinetic` or :attr:`potential`) takes the
        closed-form node: ``fused`` and ``net`` a scalar tanh MLP
        (:func:`~pl_pac_trs.trs.fused.tanh_grad.is_scalar_tanh_mlp`)."""
        return self.fused and is_scalar_tanh_mlp(net)

    def _grad(self, net: nn.Module, z: Tensor, t: Tensor | float | None) -> Tensor:
        tc = self._time(t, z)
        if z.dim() == 2 and self.closed_form(net) and fusable_dtypes(z, (net[0].weight,)):
            x = z if tc is None else torch.cat([z, tc], dim=-1)
            return tanh_mlp_input_grad(net, x, z.shape[1], fast_tanh=self.fast_tanh)
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(
                self._eval(net, z, tc).sum(), z, create_graph=create_graph
            )
        return grad

    def separable_parts(self, position_dim: int):
        """``(velocity, force)`` for :class:`~pl_pac_trs.trs.Leapfrog` when :attr:`separable`
        (autonomous) and split at this field's :attr:`position_dim`; else ``None``."""
        if self.separable and position_dim == self.position_dim:
            return self.velocity, self.force
        return None

    def velocity(self, p: Tensor, t: Tensor | float | None = None) -> Tensor:
        """``dq/dt = dK/dp`` (depends on ``p`` only, and on ``t`` when time-augmented)."""
        return self._grad(self.kinetic, p, t)

    def force(self, q: Tensor, t: Tensor | float | None = None) -> Tensor:
        """``dp/dt = -dV/dq`` (depends on ``q`` only, and on ``t`` when time-augmented)."""
        return -self._grad(self.potential, q, t)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        n = self.position_dim
        if (
            x.dim() == 2
            and self.closed_form(self.kinetic)
            and self.closed_form(self.potential)
            and fusable_dtypes(x, (self.kinetic[0].weight, self.potential[0].weight))
        ):
            q, p = x[:, :n], x[:, n:]
            return torch.cat([self._grad(self.kinetic, p, t), -self._grad(self.potential, q, t)], 1)
        create_graph = torch.is_grad_enabled()
        tc = self._time(t, x)
        with torch.enable_grad():
            q, p = x[..., :n], x[..., n:]
            if not q.requires_grad:
                q = q.detach().requires_grad_(True)
            if not p.requires_grad:
                p = p.detach().requires_grad_(True)
            energy = self._eval(self.kinetic, p, tc).sum() + self._eval(self.potential, q, tc).sum()
            dh_dq, dh_dp = torch.autograd.grad(energy, (q, p), create_graph=create_graph)
        return torch.cat([dh_dp, -dh_dq], dim=-1)
