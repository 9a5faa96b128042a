"""What the feature-based baselines (LID, KD+BU, Mahalanobis, feature squeezing) share.

- f's intermediate activations: which layers exist, the default "end of each block" layers, a
  ``keras.Model`` that returns several of them in one pass.
- :class:`LinearHead`: the z-scored logistic regression the field puts on top of the features
  (scikit-learn fits it; NumPy scores with its parameters; a TF twin gives ``margin`` its gradient).
- Hyperparameter checks whose errors name the parameter (:class:`ParamError`), and
  :func:`config_errors`, which turns them into ``ConfigError``s naming the YAML key.
- The store: ``detector.json`` (type, hyperparameters, threshold) plus ``state.npz`` (arrays, read
  with ``allow_pickle=False``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..errors import ConfigError
from .base import check_images

__all__ = [
    "BATCH_SIZE", "LinearHead", "ParamError", "activation_layers", "block_outputs", "check_float", "check_input",
    "check_labels",
    "check_int", "check_names", "config_errors", "config_kwargs", "feature_model", "load_state", "logits_of",
    "penultimate_layer", "predicted_labels", "require_keras_model", "resolve_layers", "run_batched", "save_state",
]

#: Images per forward pass when features are computed in NumPy-facing code (score, fit).
BATCH_SIZE = 128
META_FILE = "detector.json"
STATE_FILE = "state.npz"
FORMAT_VERSION = 1

_BLOCK_STARTS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.DepthwiseConv2D,
                 keras.layers.SeparableConv2D, keras.layers.Dense)
# Layers that finish a conv/dense block: its output is the block's once these have run.
_BLOCK_TAILS = (keras.layers.BatchNormalization, keras.layers.Activation, keras.layers.ReLU,
                keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.PReLU, keras.layers.Softmax)
_POOLS = (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
          keras.layers.AveragePooling1D, keras.layers.AveragePooling2D, keras.layers.AveragePooling3D,
          keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
          keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D)


# ---------------------------------------------------------------------------------------------
# Hyperparameter checks
# ---------------------------------------------------------------------------------------------


class ParamError(ValueError):
    """A bad hyperparameter: ``"<param>: expected X, got Y"``; ``param`` is the YAML key's last part."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}: {detail}")
        self.param = param
        self.detail = detail


def check_int(param: str, value: Any, *, low: int, high: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if ok and low <= value and (high is None or value <= high):
        return int(value)
    want = f"an integer in {low}-{high}" if high is not None else f"an integer >= {low}"
    raise ParamError(param, f"expected {want}, got {value!r}")


def check_float(param: str, value: Any, *, gt: float | None = None, ge: float | None = None,
                lt: float | None = None) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and math.isfinite(value) and (gt is None or value > gt) and (ge is None or value >= ge) \
            and (lt is None or value < lt):
        return float(value)
    bounds = [f"{op} {b}" for op, b in ((">", gt), (">=", ge), ("<", lt)) if b is not None]
    raise ParamError(param, f"expected a finite number {' and '.join(bounds)}, got {value!r}")


def check_names(param: str, value: Any) -> tuple[str, ...] | None:
    """None, or a non-empty tuple of distinct layer names."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not value \
            or not all(isinstance(v, str) for v in value):
        raise ParamError(param, f"expected a non-empty list of layer names or null, got {value!r}")
    if len(set(value)) != len(value):
        raise ParamError(param, f"expected no repeated layer names, got {list(value)}")
    return tuple(value)


def config_kwargs(cfg: Any, config_type: type) -> dict[str, Any]:
    """The constructor keywords of a detector config dataclass (every field but ``type``)."""
    if not isinstance(cfg, config_type):
        raise TypeError(f"cfg: expected a {config_type.__name__}, got {type(cfg).__name__}")
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "type"}


@contextlib.contextmanager
def config_errors(key: str | None) -> Iterator[None]:
    """Re-raise a :class:`ParamError` as a ``ConfigError`` naming ``<key>.<param>`` (key: e.g. detectors.lid)."""
    try:
        yield
    except ParamError as exc:
        if key is None:
            raise
        raise ConfigError(f"config key '{key}.{exc.param}': {exc.detail}") from None


# ---------------------------------------------------------------------------------------------
# f's layers and activations
# ---------------------------------------------------------------------------------------------


def require_keras_model(model: Any) -> keras.Model:
    if not isinstance(model, keras.Model):
        raise TypeError(f"model: expected a keras.Model (its layer activations are read), got {type(model).__name__}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs or len(inputs) != 1:
        raise ValueError(f"model: expected a built keras.Model with one image input, got {model.name!r} "
                         f"with {len(inputs or [])} defined inputs")
    return model


def check_input(x: Any, model: Any, name: str) -> np.ndarray:
    """float32 images [N, *f's input shape], or a ValueError naming ``name``."""
    arr = check_images(x, name)
    if len(arr) == 0:
        raise ValueError(f"{name}: expected at least one image, got an empty batch of shape {arr.shape}")
    expected = getattr(model, "input_shape", None)
    if isinstance(expected, tuple) and len(expected) == 4:
        if any(e is not None and e != a for e, a in zip(expected[1:], arr.shape[1:])):
            raise ValueError(f"{name}: expected images of shape [N, {', '.join(str(e) for e in expected[1:])}] "
                             f"(f's input), got {arr.shape}")
    return arr


def activation_layers(model: keras.Model) -> list[str]:
    """Names of f's layers (input layer excluded) in the order f computes them."""
    return [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def block_outputs(model: keras.Model) -> list[str]:
    """The layer ending each conv/dense block (after its batch norm / activation layers) and each
    pooling layer, in order; f's output layer (the logits) is the last dense block."""
    names: list[str] = []
    pending: str | None = None
    for layer in model.layers:
        if isinstance(layer, _BLOCK_STARTS):
            if pending is not None:
                names.append(pending)
            pending = layer.name
        elif isinstance(layer, _BLOCK_TAILS) and pending is not None:
            pending = layer.name
        else:
            if pending is not None:
                names.append(pending)
                pending = None
            if isinstance(layer, _POOLS):
                names.append(layer.name)
    if pending is not None:
        names.append(pending)
    return names


def resolve_layers(model: keras.Model, layers: Sequence[str] | None, default: Callable[[keras.Model], list[str]],
                   *, param: str = "layers") -> tuple[str, ...]:
    """``layers`` checked against f's layer names (``default(model)`` when None)."""
    valid = activation_layers(model)
    if layers is None:
        chosen = tuple(default(model))
        if not chosen:
            raise ParamError(param, f"expected layer names (f {model.name!r} has no default layers), got null")
        return chosen
    for name in layers:
        if name not in valid:
            raise ParamError(param, f"expected names of f's layers ({', '.join(valid)}), got {name!r}")
    return tuple(layers)


def penultimate_layer(model: keras.Model) -> str:
    """The layer whose output feeds f's output layer: the last hidden layer's features."""
    last = model.layers[-1]
    history = getattr(last.input, "_keras_history", None)
    if history is None or isinstance(history.operation, keras.layers.InputLayer):
        raise ValueError(f"model: expected f with a hidden layer before its output layer, got {model.name!r}")
    return history.operation.name


def feature_model(model: keras.Model, names: Sequence[str]) -> keras.Model:
    """x -> [activation of each named layer]; f's weights are shared, not copied."""
    outputs = [model.get_layer(name).output for name in names]
    return keras.Model(model.inputs[0], outputs, name=f"{model.name}_features")


def logits_of(model: Any, x: Any) -> tf.Tensor:
    from .base import as_model_fn

    return as_model_fn(model)(tf.convert_to_tensor(x, tf.float32))


def run_batched(fn: Callable[[tf.Tensor], Sequence[tf.Tensor]], x: np.ndarray,
                batch_size: int = BATCH_SIZE) -> list[np.ndarray]:
    """``fn`` over ``x`` in batches; each of its outputs concatenated along the batch, as NumPy."""
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(x), batch_size):
        outs = fn(tf.convert_to_tensor(x[start:start + batch_size]))
        for i, out in enumerate(outs):
            if len(parts) <= i:
                parts.append([])
            parts[i].append(np.asarray(out))
    return [np.concatenate(p, axis=0) for p in parts]


def check_labels(y: Any, n: int, num_classes: int, name: str = "y_clean") -> np.ndarray:
    """int64 labels [n] in 0..num_classes-1, or a ValueError naming ``name``."""
    arr = np.asarray(y)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= num_classes:
        raise ValueError(f"{name}: expected {n} integer labels in 0..{num_classes - 1}, got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    return arr.astype(np.int64)


def predicted_labels(model: Any, x: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    (logits,) = run_batched(lambda b: [logits_of(model, b)], x, batch_size)
    return np.argmax(logits, axis=-1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# The z-scored logistic regression
# ---------------------------------------------------------------------------------------------


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class LinearHead:
    """Logistic regression on z-scored features: logit = ((f - mean) / scale) @ coef + intercept."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, clean: np.ndarray, adv: np.ndarray) -> "LinearHead":
        """StandardScaler + LogisticRegression on clean (label 0) and adversarial (label 1) features.

        ``class_weight='balanced'`` keeps 0.5 the equal-error point when the two sets differ in size
        (with equal sets, the field's setting, it changes nothing)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        x = np.concatenate([clean, adv], axis=0).astype(np.float64)
        y = np.concatenate([np.zeros(len(clean)), np.ones(len(adv))])
        if not np.isfinite(x).all():
            raise ValueError("features: expected finite detector features, got NaN or Inf")
        scaler = StandardScaler().fit(x)
        lr = LogisticRegression(max_iter=1000, class_weight="balanced").fit(scaler.transform(x), y)
        return cls(mean=scaler.mean_.astype(np.float64), scale=scaler.scale_.astype(np.float64),
                   coef=lr.coef_[0].astype(np.float64), intercept=float(lr.intercept_[0]))

    def logit(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        return z @ self.coef + self.intercept

    def proba(self, features: np.ndarray) -> np.ndarray:
        return sigmoid(self.logit(features))

    def logit_tf(self, features: tf.Tensor) -> tf.Tensor:
        z = (tf.cast(features, tf.float64) - self.mean) / self.scale
        return tf.cast(tf.linalg.matvec(z, tf.constant(self.coef)) + self.intercept, tf.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"head_mean": self.mean, "head_scale": self.scale, "head_coef": self.coef,
                "head_intercept": np.asarray([self.intercept])}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "LinearHead":
        return cls(mean=arrays["head_mean"], scale=arrays["head_scale"], coef=arrays["head_coef"],
                   intercept=float(arrays["head_intercept"][0]))


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


def save_state(directory: Path | str, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / STATE_FILE, **{k: np.asarray(v) for k, v in arrays.items()})
    text = json.dumps({"type": kind, "format": FORMAT_VERSION, **meta}, indent=1, sort_keys=True)
    (directory / META_FILE).write_text(text + "\n", encoding="utf-8")


def load_state(directory: Path | str, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    directory = Path(directory)
    meta_path, state_path = directory / META_FILE, directory / STATE_FILE
    for path in (meta_path, state_path):
        if not path.is_file():
            raise ValueError(f"directory: expected a stored {kind} detector with {path.name}, "
                             f"got {directory} without it")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("type") != kind or meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"directory: expected a stored {kind} detector (format {FORMAT_VERSION}), "
                         f"got type {meta.get('type')!r} format {meta.get('format')!r}")
    with np.load(state_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return meta, arrays
