"""What the attack registry holds, the one result type of every attack, and the Python API around them.

An attack module defines a plain TF function of the model (cleverhans style), a frozen config
dataclass mirrored by the YAML, and one :class:`AttackSpec` registration saying whether it takes
an eps grid, its norm, and any extra metrics. The pipeline and the Python API both build a
:class:`Crafter` from the spec (once per attack and model, so one trace serves every eps and
every chunk) and call it on NumPy batches.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["ADAPTIVE_ATTACKS", "ATTACKS", "AdaptiveSpec", "AdaptiveTask", "AttackResult", "AttackSpec", "Crafted", "Crafter", "GraphCrafter", "SetSummary"]


@dataclass(frozen=True, eq=False)
class AttackResult:
    """What every attack returns through the Python API.

    ``x_adv``: float32, the shape of ``x``; ``success``: bool per image (untargeted attacks: f's
    prediction moved away from ``y``; JSMA: f predicts the drawn target); ``info``: the attack's
    name and parameters, the labels ``y`` it moved away from, and attack-specific arrays and numbers
    (JSMA: ``target``, ``changed_fraction``, ``iterations``).
    """

    x_adv: np.ndarray
    success: np.ndarray
    info: dict[str, Any]

    def __repr__(self) -> str:  # the arrays would flood logs
        return (f"AttackResult(attack={self.info.get('attack')!r}, x_adv={self.x_adv.shape}, "
                f"success={float(np.mean(self.success)) if self.success.size else float('nan'):.3f})")


@dataclass
class Crafted:
    """One batch or chunk crafted: the images, per-image arrays stored with them, and numbers (timings)."""

    x_adv: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SetSummary:
    """An attack's test set as its metrics see it (all NumPy)."""

    x: np.ndarray  # clean test images
    y: np.ndarray  # their true labels
    x_adv: np.ndarray
    adv_pred: np.ndarray  # f's predictions on x_adv
    clean_correct: np.ndarray  # f right on the clean image
    arrays: Mapping[str, np.ndarray]  # the attack's per-image arrays (Crafted.arrays), test part


Crafter = Callable[..., Crafted]
"""``crafter(x, y, *, eps, seed_at, progress) -> Crafted``; built by :meth:`AttackSpec.crafter`.

``y``: the labels the attack uses (f's predictions, or the true labels where the spec says so);
``eps``: the radius (None for attacks without a grid); ``seed_at(i)``: the seed of image ``i`` of
the batch given (host-driven attacks seed each sub-batch with its first image's), so a stored set
does not depend on how it was chunked.
"""


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: its config, whether it has an eps grid, its norm, and how to run it.

    ``step(cfg, model_fn)`` returns the per-batch TF function ``(x, y, seeds, *constants) ->
    x_adv``, with ``constants(cfg, eps)`` its float arguments (eps, step size), so one compiled
    function serves the whole grid. ``y`` is None when the attack is to take f's prediction in the
    graph (no label leaking); ``seeds`` (int32, one per image) is None unless the spec is
    ``seeded`` (random starts). Host-driven attacks (JSMA) give ``craft`` instead.
    """

    name: str
    config: type
    eps_grid: bool = True
    norm: Callable[[Any], str | None] = lambda cfg: None
    uses_true_label: bool = False
    step: Callable[[Any, Callable], Callable] | None = None
    seeded: bool = False
    constants: Callable[[Any, float | None], tuple[float, ...]] = lambda cfg, eps: (eps,)
    craft: Callable[..., Crafter] | None = None
    metrics: Callable[[SetSummary], dict[str, float]] = lambda s: {}
    notes: Callable[[Mapping[str, Any]], str] = lambda entry: ""
    environment: Callable[[Any], dict[str, Any]] = lambda cfg: {}

    def crafter(self, cfg: Any, model_fn: Callable, runner: Any, *, labeled: bool = False) -> Crafter:
        """A crafter for ``cfg`` on f = ``model_fn``, compiled once on ``runner`` (a distribute.Runner)."""
        if self.craft is not None:
            return self.craft(cfg, model_fn, runner)
        assert self.step is not None, f"attack {self.name!r} registers neither step nor craft"
        return GraphCrafter(self, cfg, runner, self.step(cfg, model_fn), labeled)

    def batch_size(self, cfg: Any) -> int:
        return int(getattr(cfg, "batch_size", 256))

    def params(self, cfg: Any) -> dict[str, Any]:
        """The config as the stage key and the API's ``info`` record it (the grid and the backend aside)."""
        return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("eps", "backend")}


class GraphCrafter:
    """A compiled per-batch attack run over NumPy arrays (the pipeline's and the API's batched attacks)."""

    def __init__(self, spec: AttackSpec, cfg: Any, runner: Any, attack: Callable, labeled: bool) -> None:
        self.spec, self.cfg, self.runner, self.labeled = spec, cfg, runner, labeled
        # One function object per crafter: the runner traces it once for every eps and chunk.
        if labeled and spec.seeded:
            self.step = lambda x, y, seeds, *c: attack(x, y, seeds, *c)
        elif labeled:
            self.step = lambda x, y, *c: attack(x, y, None, *c)
        elif spec.seeded:
            self.step = lambda x, seeds, *c: attack(x, None, seeds, *c)
        else:
            self.step = lambda x, *c: attack(x, None, None, *c)

    def __call__(self, x: np.ndarray, y: np.ndarray | None, *, eps: float | None,
                 seed_at: Callable[[int], int] = lambda i: i,
                 progress: Callable[[int], None] | None = None) -> Crafted:
        inputs = [x]
        if self.labeled:
            inputs.append(np.asarray(y, np.int32))
        if self.spec.seeded:
            inputs.append(np.array([seed_at(i) for i in range(len(x))], np.int32))
        out = self.runner.run(self.step, inputs, batch_size=self.spec.batch_size(self.cfg),
                              constants=self.spec.constants(self.cfg, eps), progress=progress)[0]
        return Crafted(out)


def _registry(kind: str):
    from ..registry import Registry

    return Registry(kind)


#: Every attack the suites and the API know, by name (``attacks.NAME.type`` in the YAML).
ATTACKS = _registry("attack")


@dataclass(frozen=True)
class AdaptiveTask:
    """What an adaptive attack on f + D is given: f, D's margin (> 0: flagged), the clean images, the ball."""

    runner: Any  # distribute.Runner
    model_fn: Callable
    detector_fn: Callable  # images -> D's margin [B], differentiable (saliency through the surrogate)
    x: np.ndarray
    ball: tuple[str, float] | None  # (norm, eps) of the attack D was fit on, or the attack's own
    batch_size: int


@dataclass(frozen=True)
class AdaptiveSpec:
    """A registered attack on f and a detector together (``adaptive.attacks`` in the YAML).

    ``craft(cfg, task)`` returns one ``(row_fields, x_adv)`` per setting it sweeps (Metzen's sigma
    grid) or a single one; ``uses_ball``: it works inside an eps ball and is skipped where none is
    defined. ``describe(row)`` is the report's name of a row's attack.
    """

    name: str
    config: type
    craft: Callable[[Any, AdaptiveTask], list[tuple[dict[str, Any], np.ndarray]]]
    uses_ball: bool = True
    describe: Callable[[Mapping[str, Any]], str] = lambda row: row["adaptive_attack"]


#: Attacks on f + D by name (``adaptive.attacks``); each one's settings are ``adaptive.NAME``.
ADAPTIVE_ATTACKS = _registry("attack")
ADAPTIVE_ATTACKS.kind = "adaptive attack"
