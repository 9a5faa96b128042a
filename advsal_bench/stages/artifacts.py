"""The typed artifacts stages consume and produce; each carries the store key it was made under.

A stage's own key is derived from the keys of the artifacts it is given (``store.stage_key``), so
an artifact made from other data, another f or another config has another key, and everything
downstream of it is recomputed, never silently reused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..store import array_digest


@dataclass(frozen=True, eq=False)
class Images:
    """Clean images with their labels; the key is a digest of the content itself."""

    x: np.ndarray
    y: np.ndarray
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", array_digest(self.x, self.y))

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True, eq=False)
class Pool(Images):
    """The images every attack crafts from: the adversarial train subset, then the test subset."""

    n_train: int = 0

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", array_digest(self.x, self.y, np.asarray(self.n_train)))

    @property
    def train(self) -> slice:
        return slice(0, self.n_train)

    @property
    def test(self) -> slice:
        return slice(self.n_train, len(self.x))


@dataclass(frozen=True, eq=False)
class Splits:
    """What a suite's data gives the stages: f's training and test sets, the attack pool, validation images."""

    train: Images
    test: Images
    pool: Pool
    val: Images
    val_split: str  # where the validation images come from: "test" or "train"
    num_classes: int
    source: str


@dataclass(frozen=True, eq=False)
class Classifier:
    """f: the Keras model and its logits function (one object, so compiled steps trace it once)."""

    key: str
    model: Any
    fn: Callable


@dataclass(frozen=True, eq=False)
class AdvSet:
    """One attack at one eps on the pool: the images, per-image arrays, timings and f's test predictions."""

    key: str
    attack: str
    eps: float | None
    x: np.ndarray
    arrays: dict[str, np.ndarray]
    values: dict[str, float]
    seconds: float
    n_train: int
    pred_test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def label(self) -> str:
        """The set's name in stage labels and logs: the attack, with its eps where it has one."""
        return self.attack if self.eps is None else f"{self.attack}:eps={self.eps:g}"

    @property
    def x_train(self) -> np.ndarray:
        return self.x[: self.n_train]

    @property
    def x_test(self) -> np.ndarray:
        return self.x[self.n_train :]


@dataclass(frozen=True, eq=False)
class Saliency:
    """f's raw saliency maps of a set (pool, validation or adversarial), in the set's order."""

    key: str
    maps: np.ndarray
    seconds: float = 0.0  # computing them (stored with them, so a reused set keeps its figure)


@dataclass(frozen=True, eq=False)
class FittedDetector:
    """A detector fit on one adversarial set (or on clean images alone, for training-free ones)."""

    key: str
    name: str
    fit_label: str
    detector: Any


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A detector's metrics on one adversarial test set, with the scores the ROC curves need."""

    key: str
    metrics: dict[str, float]
    scores_clean: np.ndarray
    scores_adv: np.ndarray
    seconds: float
    images: int


@dataclass(frozen=True, eq=False)
class AdaptiveRows:
    """One adaptive attack against one detector: a row per setting (e.g. per Metzen sigma)."""

    key: str
    rows: list[dict[str, Any]]
