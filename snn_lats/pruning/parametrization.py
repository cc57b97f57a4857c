"""Attach the soft-threshold reparameterisation to weights, without subclassing any layer.

``torch.nn.utils.parametrize`` turns ``module.weight`` into ``S_d(θ)`` computed from the latent
``θ = module.parametrizations.weight.original``; the layer's threshold ``d`` is the buffer
``module.parametrizations.weight[0].threshold``, so ``model.state_dict()`` carries it. Any module
with a ``weight`` Parameter works: Conv1d/2d/3d, depthwise conv, Linear, a user's own layer.
"""

from __future__ import annotations

import fnmatch
import weakref
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from snn_lats.pruning.functional import _CachedSoftThreshold, check_gradient, soft_threshold

__all__ = [
    "SoftThreshold",
    "attach",
    "finalize",
    "select_layers",
    "pruned_layers",
    "soft_threshold_of",
    "Selector",
    "DEFAULT_TYPES",
]

#: What ``attach`` prunes when ``include`` names no type.
DEFAULT_TYPES: tuple[type, ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

Selector = type | str | Iterable[type | str] | None


class SoftThreshold(nn.Module):
    """Parametrization ``w = S_d(θ) = sign(θ)·max(|θ| − d, 0)`` of one weight.

    ``threshold`` (a 0-d buffer) is the layer's ``d``. With ``learnable=True``,
    ``d = sigmoid(s)`` with ``s = threshold_logit`` a trained Parameter (STR), computed with
    plain autograd ops; the ``threshold`` buffer then mirrors the last ``sigmoid(s)`` that
    :meth:`sync_threshold` saw.

    Fixed thresholds take the fast path. ``S_d(θ)`` is computed in one ``softshrink`` pass when
    θ or ``d`` changed, and handed to autograd through a function whose backward is the identity
    (or ``× 1[w ≠ 0]`` for ``gradient="exact"``): the soft threshold adds no node, saved tensor
    or backward op to the graph. In training the pruned weight lives as long as autograd needs
    it (the layer's backward), like a dense weight's gradient would, and a weak reference finds
    it again for a second forward before θ changes; under ``no_grad`` it is kept for the next
    batch. Set ``d`` with :meth:`set_threshold`, not by writing the buffer, and change θ in place
    under ``torch.no_grad()`` (as optimizers and ``load_state_dict`` do), not through ``θ.data``,
    whose writes do not move θ's version counter.

    Under ``torch.compile`` the forward is ``θ − clamp(θ, −d, d)`` of the ``threshold`` buffer
    (:func:`soft_threshold`, the same values and gradients): dynamo traces it into the model's
    graph, which the compiler fuses, and a new ``d`` is new buffer data, not a recompilation.

    A per-weight ``preconditioner`` r (:meth:`set_preconditioner`; None by default) makes the
    threshold of weight i ``d·r_i``: under Adam, r is the lr-weighted mean of the optimizer's
    per-weight step factor ``1/(√v̂ + ε)``, so that each weight's threshold grows by ``λ`` times
    the step Adam applied to it (docs/concepts.md, "LATS under Adam"). ``d`` stays a scalar.

    A fixed mask (:meth:`set_mask`, :meth:`freeze`) replaces the soft threshold: ``w = θ ⊙ M``,
    the gradient reaching the kept weights only, as ``torch.nn.utils.prune``'s masks do. Gradual
    magnitude pruning raises its masks so; a soft-threshold schedule freezes its zeros into one
    when its window ends. ``d`` then stays as a record of the threshold reached.
    """

    def __init__(
        self,
        gradient: str = "straight-through",
        learnable: bool = False,
        s_init: float = -10.0,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.gradient = check_gradient(gradient)
        self.learnable = bool(learnable)
        self.register_buffer("threshold", torch.zeros((), device=device))
        if self.learnable:
            self.threshold_logit = nn.Parameter(torch.tensor(float(s_init), device=device))
            self.threshold.fill_(torch.sigmoid(self.threshold_logit.detach()).item())
        self._threshold_value = float(self.threshold)  # Python mirror: no device sync per forward
        self.register_buffer("mask", None)  # a bool tensor shaped like θ once masked (in the state dict then)
        self.register_buffer("preconditioner", None)  # r, shaped like θ once set (in the state dict then)
        self._cache: torch.Tensor | None = None
        self._cache_ref = None
        self._cache_key: tuple | None = None

    # --- the threshold -------------------------------------------------------------------
    def set_threshold(self, value: float) -> None:
        """Set a fixed threshold ``d >= 0`` (invalidates the cached weight)."""
        if self.learnable:
            raise RuntimeError("a learnable threshold is sigmoid(threshold_logit); set threshold_logit instead")
        value = float(value)
        if not value >= 0:
            raise ValueError(f"threshold must be >= 0, got {value}")
        if value != self._threshold_value:
            self.threshold.fill_(value)
            self._threshold_value = value
            self.invalidate()

    @torch.no_grad()
    def set_preconditioner(self, r: torch.Tensor) -> None:
        """Make weight i's threshold ``d·r_i`` (``r >= 0``, shaped like θ, in θ's precision); copied,
        and kept in the state dict from now on."""
        if self.learnable:
            raise RuntimeError("a learnable threshold is one sigmoid(threshold_logit) per layer")
        if self.preconditioner is None:
            self.preconditioner = r.detach().to(self.threshold.device).clone()
        else:
            self.preconditioner.copy_(r)
        self.invalidate()

    def _soft_threshold(self, theta: torch.Tensor) -> torch.Tensor:
        """``S_d(θ)`` of the current threshold, per weight where a preconditioner is set (no grad)."""
        if self.preconditioner is None:
            return F.softshrink(theta, self._threshold_value)
        d = (self._threshold_value * self.preconditioner).to(theta.dtype)
        return theta - torch.clamp(theta, -d, d)

    @property
    def masked(self) -> bool:
        """Whether ``w = θ ⊙ M`` (a fixed mask) rather than ``S_d(θ)``."""
        return self.mask is not None

    @torch.no_grad()
    def set_mask(self, mask: torch.Tensor, threshold: float) -> None:
        """Compute with ``w = θ ⊙ mask`` from now on; ``threshold`` records the magnitude it cut at."""
        if self.learnable:
            raise RuntimeError("a learnable threshold cannot be masked")
        mask = mask.to(device=self.threshold.device, dtype=torch.bool)
        if self.mask is None:
            self.mask = mask.clone()
        else:
            self.mask.copy_(mask)
        self.threshold.fill_(float(threshold))
        self._threshold_value = float(threshold)
        self.invalidate()

    @torch.no_grad()
    def freeze(self, theta: torch.Tensor) -> None:
        """Freeze the zeros of ``S_d(θ)``: θ becomes ``S_d(θ)`` (in place, so the optimizer keeps
        it) and the mask its nonzeros, so ``w`` is unchanged and its zeros stay zeros."""
        if self.mask is not None:
            return
        theta.copy_(self._soft_threshold(theta))
        self.set_mask(theta != 0, self._threshold_value)

    def current_threshold(self) -> float:
        """The ``d`` the next forward uses."""
        if self.learnable:
            return float(torch.sigmoid(self.threshold_logit.detach()))
        return self._threshold_value

    def sync_threshold(self) -> None:
        """Copy ``sigmoid(s)`` into the ``threshold`` buffer (learnable thresholds only)."""
        if self.learnable:
            with torch.no_grad():
                self.threshold.copy_(torch.sigmoid(self.threshold_logit))

    def invalidate(self) -> None:
        """Drop the cached ``S_d(θ)``; the next forward recomputes it."""
        self._cache = None
        self._cache_ref = None
        self._cache_key = None

    # --- nn.Module plumbing: keep the mirror and the cache honest ---------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A mask or a preconditioner exists in a state dict only once set: follow the state dict either way.
        for key in ("mask", "preconditioner"):
            saved = state_dict.get(prefix + key)
            if saved is None:
                setattr(self, key, None)
            elif getattr(self, key) is None:
                setattr(self, key, torch.zeros(saved.shape, dtype=saved.dtype, device=self.threshold.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._threshold_value = float(self.threshold)
        self.invalidate()

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .half(), ...
        self.invalidate()
        return super()._apply(fn, recurse)

    def __getstate__(self):  # deepcopy / pickle: never copy the cached weight
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state["_cache"] = None
        state["_cache_ref"] = None
        state["_cache_key"] = None
        return state

    # --- the parametrization -------------------------------------------------------------
    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        if self.learnable:
            return soft_threshold(theta, torch.sigmoid(self.threshold_logit).to(theta.dtype), self.gradient)
        if torch.compiler.is_compiling():
            # Dynamo cannot trace the cache below (version counters, pointers, weak references,
            # inference mode) and would specialise on the Python float d. Traced instead: S_d(θ)
            # of the d buffer, an expression the compiler fuses, with the same gradients.
            if self.mask is not None:
                return theta * self.mask
            d = self.threshold if self.preconditioner is None else self.threshold * self.preconditioner
            return soft_threshold(theta, d.to(theta.dtype), self.gradient)
        # θ._version moves on every in-place update (optimizer steps, load_state_dict), the
        # pointer on moves; inference-mode tensors must not leak into autograd.
        key = (theta._version, theta.data_ptr(), theta.dtype, torch.is_inference_mode_enabled())
        weight = self._cache if self._cache is not None else (self._cache_ref() if self._cache_ref else None)
        if weight is None or key != self._cache_key:
            with torch.no_grad():
                weight = self._soft_threshold(theta) if self.mask is None else theta * self.mask
            self._cache_key = key
        if theta.requires_grad and torch.is_grad_enabled():
            # Training: autograd keeps the weight for the layer's backward; holding it here too
            # would add a full copy of the weights to the peak memory, so only a weak reference.
            self._cache, self._cache_ref = None, weakref.ref(weight)
            exact = self.gradient == "exact" or self.mask is not None  # a mask passes no gradient to its zeros
            return _CachedSoftThreshold.apply(theta, weight, exact)
        self._cache, self._cache_ref = weight, None  # evaluation: keep it for the next batch
        return weight

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """``θ = w + d·sign(w)``: assigning ``module.weight = w`` stores a θ with ``S_d(θ) = w``
        (``θ = w`` under a mask)."""
        if self.mask is not None:
            return weight * self.mask
        d = self.current_threshold() if self.preconditioner is None else self.current_threshold() * self.preconditioner
        return weight + d * torch.sign(weight)

    def extra_repr(self) -> str:
        kind = "learnable" if self.learnable else "masked" if self.mask is not None else "fixed"
        kind += ", per-weight preconditioner" if self.preconditioner is not None else ""
        return f"threshold={self.current_threshold():.4g} ({kind}), gradient={self.gradient!r}"


# --- selecting and attaching -------------------------------------------------------------
def _split_selector(selector: Selector, argument: str) -> tuple[tuple[type, ...], tuple[str, ...]]:
    if selector is None:
        return (), ()
    items = [selector] if isinstance(selector, (type, str)) else list(selector)
    types, patterns = [], []
    for item in items:
        if isinstance(item, type) and issubclass(item, nn.Module):
            types.append(item)
        elif isinstance(item, str):
            patterns.append(item)
        else:
            raise TypeError(f"{argument} takes nn.Module subclasses and/or fnmatch name patterns, got {item!r}")
    return tuple(types), tuple(patterns)


def _check_matches(model: nn.Module, argument: str, types: tuple[type, ...], patterns: tuple[str, ...]) -> None:
    modules = dict(model.named_modules())
    unmatched = [f"type {t.__name__}" for t in types if not any(isinstance(m, t) for m in modules.values())]
    unmatched += [repr(p) for p in patterns if not any(fnmatch.fnmatchcase(name, p) for name in modules if name)]
    if unmatched:
        layers = list(select_layers(model))
        shown = ", ".join(layers[:6] + (["..."] if len(layers) > 8 else []) + layers[max(6, len(layers) - 2) :])
        raise ValueError(f"{argument}: {unmatched[0]} matches no layer of the network (its layers: {shown})")


def soft_threshold_of(module: nn.Module) -> SoftThreshold | None:
    """The :class:`SoftThreshold` on ``module.weight``, or None."""
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(p, SoftThreshold):
                return p
    return None


def pruned_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules of ``model`` whose weight carries a soft threshold, in ``named_modules`` order."""
    return {name: m for name, m in model.named_modules() if soft_threshold_of(m) is not None}


def select_layers(
    model: nn.Module,
    include: Selector = None,
    exclude: Selector = None,
    dense_first_last: bool = False,
) -> dict[str, nn.Module]:
    """The modules :func:`attach` would prune, in ``named_modules`` order.

    A module is selected when it has a ``weight`` Parameter, its type is one of the include
    types (default: Conv1d/2d/3d, Linear and their subclasses), its name matches one of the
    include patterns (default: any), and it matches no exclude type or pattern. With
    ``dense_first_last``, the first and the last selected modules (the input conv and the
    classifier) are then left dense. An include or exclude item that matches no module of
    ``model`` is a ValueError: a typo would otherwise prune, or keep dense, other layers than meant.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    inc_types, inc_patterns = _split_selector(include, "include")
    exc_types, exc_patterns = _split_selector(exclude, "exclude")
    for argument, types, patterns in (("include", inc_types, inc_patterns), ("exclude", exc_types, exc_patterns)):
        _check_matches(model, argument, types, patterns)
    inc_types = inc_types or DEFAULT_TYPES
    selected: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, (SoftThreshold, parametrize.ParametrizationList)):
            continue
        if not isinstance(module, inc_types) or isinstance(module, exc_types or ()):
            continue
        if inc_patterns and not any(fnmatch.fnmatchcase(name, p) for p in inc_patterns):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exc_patterns):
            continue
        if parametrize.is_parametrized(module, "weight"):
            selected[name] = module  # reported below
            continue
        if isinstance(getattr(module, "weight", None), nn.Parameter):
            selected[name] = module
    if dense_first_last:
        names = list(selected)
        for name in {names[0], names[-1]} if names else ():
            del selected[name]
    return selected


def attach(
    model: nn.Module,
    include: Selector = None,
    exclude: Selector = None,
    dense_first_last: bool = False,
    gradient: str = "straight-through",
    learnable: bool = False,
    s_init: float = -10.0,
) -> dict[str, nn.Module]:
    """Reparameterise the selected weights as ``w = S_d(θ)`` (see :func:`select_layers`).

    θ starts equal to the current weight and ``d = 0`` (``learnable``: ``d = sigmoid(s_init)``),
    so nothing changes until a threshold is set. θ is the same Parameter object as the old
    weight, so an optimizer built before ``attach`` still trains it. To evaluate a checkpoint,
    ``attach`` with the training-time arguments, then ``model.load_state_dict(checkpoint)``
    restores θ and every threshold. Returns the pruned modules by name.
    """
    check_gradient(gradient)
    layers = select_layers(model, include, exclude, dense_first_last)
    if not layers:
        raise ValueError(
            "model has nothing to prune: no module with a weight Parameter matches "
            f"include={include!r}, exclude={exclude!r}, dense_first_last={dense_first_last}"
        )
    seen: dict[int, str] = {}
    for name, module in layers.items():
        if parametrize.is_parametrized(module, "weight"):
            what = "a soft threshold" if soft_threshold_of(module) is not None else "a parametrization"
            raise ValueError(f"the weight of {name!r} already has {what}; attach once, to plain weights")
        if id(module.weight) in seen:
            raise ValueError(
                f"{name!r} shares its weight with {seen[id(module.weight)]!r}; tied weights cannot be pruned"
            )
        seen[id(module.weight)] = name
    for module in layers.values():
        p = SoftThreshold(gradient, learnable, s_init, device=module.weight.device)
        parametrize.register_parametrization(module, "weight", p)
    return layers


def finalize(model: nn.Module) -> nn.Module:
    """Bake ``S_d(θ)`` into plain weights and remove the reparameterisation, in place.

    Uses ``remove_parametrizations(leave_parametrized=True)``: the weight Parameter keeps its
    identity, the state dict loses the θ/threshold keys, and the model strict-loads into the
    same architecture built without pruning. Returns ``model``.
    """
    layers = pruned_layers(model)
    if not layers:
        raise ValueError("model has no soft-threshold parametrization to finalize")
    for module in layers.values():
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model
