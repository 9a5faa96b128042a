"""Suite configuration: frozen dataclasses mirrored by the YAML, validated key by key.

Every error is a one-line :class:`ConfigError` naming the key path, what was expected and what was
found, so that ``python -m advsal_bench validate`` and ``run`` can exit with code 2 before writing
anything.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

from .errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Dataclasses (the YAML schema). Field metadata carries the checks: ge/gt/le/lt ranges and choices.
# ---------------------------------------------------------------------------------------------

DATASET_NAMES = ("mnist", "cifar10", "imagenet10")
DATA_SOURCES = ("sample", "keras", "npz", "idx", "cifar_batches", "image_folder")
DETECTOR_INPUTS = ("image", "saliency")
EXPERIMENTS = ("table1", "eps_generalization", "attack_generalization", "gradcam")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def param(default: Any = dataclasses.MISSING, **checks: Any) -> Any:
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for defaults")
    return field(default=default, metadata=checks)


@dataclass(frozen=True)
class DatasetConfig:
    name: str = param("mnist", choices=DATASET_NAMES)
    source: str = param("sample", choices=DATA_SOURCES)
    path: str | None = param(None)
    train_size: int | None = param(None, gt=0)
    test_size: int | None = param(None, gt=0)
    image_size: int = param(224, gt=0)
    classes: tuple[str, ...] | None = param(None, nonempty=True)


@dataclass(frozen=True)
class ClassifierConfig:
    arch: str | None = param(None, model=True)
    epochs: int = param(10, ge=0)
    batch_size: int = param(128, gt=0)
    learning_rate: float = param(1e-3, gt=0)
    lr_decay_epochs: tuple[int, ...] = param((), gt=0)
    lr_decay_factor: float = param(0.1, gt=0, le=1)
    path: str | None = param(None)
    weights: str | None = param(None)


@dataclass(frozen=True)
class FGSMConfig:
    type: str = "fgsm"
    eps: tuple[float, ...] = param((0.1, 0.2, 0.3), ge=0, nonempty=True)
    batch_size: int = param(256, gt=0)


@dataclass(frozen=True)
class IFGSMLinfConfig:
    type: str = "ifgsm_linf"
    eps: tuple[float, ...] = param((0.1, 0.2, 0.3), ge=0, nonempty=True)
    steps: int = param(10, gt=0)
    alpha: float | None = param(None, gt=0)
    batch_size: int = param(256, gt=0)


@dataclass(frozen=True)
class IFGSML2Config:
    type: str = "ifgsm_l2"
    eps: tuple[float, ...] = param((1.0, 2.0, 3.0), ge=0, nonempty=True)
    steps: int = param(10, gt=0)
    alpha: float | None = param(None, gt=0)
    batch_size: int = param(256, gt=0)


@dataclass(frozen=True)
class JSMAConfig:
    type: str = "jsma"
    theta: float = param(1.0, gt=0, le=1)
    gamma: float = param(0.1, gt=0, le=1)
    target: Union[int, str] = param("random", target=True)
    increase: bool = True
    backend: str = param("auto", choices=("auto", "numpy", "native", "cupy", "reference"))
    batch_size: int = param(64, gt=0)


@dataclass(frozen=True)
class CWL2Config:
    """Carlini & Wagner L2: no eps, it finds the smallest perturbation it can."""

    type: str = "cw_l2"
    kappa: float = param(0.0, ge=0)
    c_init: float = param(1.0, gt=0)
    binary_search_steps: int = param(5, gt=0)
    steps: int = param(100, gt=0)
    learning_rate: float = param(5e-2, gt=0)
    batch_size: int = param(256, gt=0)


ATTACK_CONFIGS: dict[str, type] = {
    "fgsm": FGSMConfig,
    "ifgsm_linf": IFGSMLinfConfig,
    "ifgsm_l2": IFGSML2Config,
    "jsma": JSMAConfig,
    "cw_l2": CWL2Config,
}
AttackConfig = Union[FGSMConfig, IFGSMLinfConfig, IFGSML2Config, JSMAConfig, CWL2Config]
EPS_FREE_ATTACKS = ("jsma", "cw_l2")


@dataclass(frozen=True)
class AdversarialConfig:
    """How many train/test images get adversarial versions (null: all of the split)."""

    train_size: int | None = param(None, gt=0)
    test_size: int | None = param(None, gt=0)
    # Crafted images are stored in chunks of this many, so a killed run resumes at the last full chunk.
    chunk_size: int = param(1024, gt=0)
    # Clean images D never trains on, for thresholds chosen before test data is seen (tpr_at_5_fpr):
    # taken from the test images beyond test_size, else from the train images beyond train_size.
    validation_size: int = param(500, ge=0)


@dataclass(frozen=True)
class EpsilonSelectionConfig:
    max_accuracy: float = param(0.30, ge=0, le=1)


@dataclass(frozen=True)
class SaliencyConfig:
    method: str = param("gradient", choices=("gradient",))
    abs: bool = False
    # "none" measured best for the [image, saliency] detector (README, "Saliency scale").
    normalize: str = param("none", choices=("none", "per_image", "global"))


@dataclass(frozen=True)
class DetectorConfig:
    arch: str | None = param(None, model=True)
    inputs: tuple[str, ...] = param(("image", "saliency"), choices=DETECTOR_INPUTS, nonempty=True, unique=True)
    epochs: int = param(10, ge=0)
    batch_size: int = param(128, gt=0)
    learning_rate: float = param(1e-4, gt=0)
    # arch metzen_d only: the layer of f whose activations the detector reads (null: the arch's default).
    layer: str | None = param(None)
    # highpass: D sees the image's fixed high-pass residual instead of its pixels (models/residual.py);
    # none: the pixels, as in the paper.
    image_filter: str = param("none", choices=("none", "highpass"))


@dataclass(frozen=True)
class MetzenAdaptiveConfig:
    """Metzen et al.'s attack on f + D; sigma weighs D's gradient against f's."""

    sigma: tuple[float, ...] = param((0.0, 0.5, 1.0), ge=0, le=1, nonempty=True, unique=True)
    steps: int = param(10, gt=0)
    # null: the selected eps and norm of the attack D was fit on (an l_inf attack's for jsma and cw_l2).
    eps: float | None = param(None, gt=0)
    norm: str = param("auto", choices=("auto", "linf", "l2"))


@dataclass(frozen=True)
class CWDetectorAdaptiveConfig:
    kappa: float = param(0.0, ge=0)
    c: float = param(1.0, gt=0)
    steps: int = param(100, gt=0)
    learning_rate: float = param(5e-2, gt=0)


@dataclass(frozen=True)
class AdaptiveConfig:
    """White-box attacks on f and D together, run against each Table 1 detector."""

    attacks: tuple[str, ...] = param((), choices=("metzen", "cw_detector"), unique=True)
    detectors: tuple[str, ...] | None = param(None, nonempty=True)
    test_size: int = param(200, gt=0)
    batch_size: int = param(100, gt=0)
    # Gradient through the saliency map from a softplus(beta*z)/beta copy of f (null: f's own, which is
    # exactly zero almost everywhere for ReLU nets: gradient masking, not robustness).
    surrogate_beta: float | None = param(30.0, gt=0)
    metzen: MetzenAdaptiveConfig = MetzenAdaptiveConfig()
    cw_detector: CWDetectorAdaptiveConfig = CWDetectorAdaptiveConfig()


@dataclass(frozen=True)
class GradCAMConfig:
    """Layers for the Grad-CAM analysis (null: a shallow, a middle and a deep layer of f)."""

    layers: tuple[str, ...] | None = param(None, nonempty=True)
    images: int = param(4, gt=0, le=32)


@dataclass(frozen=True)
class DistributeConfig:
    strategy: str = param("auto", choices=STRATEGIES)
    devices: Union[int, tuple[str, ...], None] = param(None)
    cpu_devices: int | None = param(None, gt=0)
    cluster_resolver: str = param("tf_config", choices=("tf_config", "slurm"))
    # multi_worker: seconds without a heartbeat before a peer counts as lost, and how long workers wait
    # for each other at start-up (null: env ADVSAL_HEARTBEAT_TIMEOUT / ADVSAL_CLUSTER_TIMEOUT, else 10 / 300).
    heartbeat_timeout: float | None = param(None, gt=0)
    join_timeout: float | None = param(None, gt=0)
    # How f and D train: 'fit' (Keras model.fit), 'custom' (advsal_bench.training's loop, the same
    # arithmetic for 1 and N replicas), 'auto' (custom across workers, where model.fit cannot run, else fit).
    train_loop: str = param("auto", choices=("auto", "fit", "custom"))


@dataclass(frozen=True)
class SuiteConfig:
    name: str = param(dataclasses.MISSING, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = param(0, ge=0)
    dataset: DatasetConfig = DatasetConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    attacks: Mapping[str, AttackConfig] = field(default_factory=lambda: types.MappingProxyType({"fgsm": FGSMConfig()}))
    adversarial: AdversarialConfig = AdversarialConfig()
    epsilon_selection: EpsilonSelectionConfig = EpsilonSelectionConfig()
    saliency: SaliencyConfig = SaliencyConfig()
    detectors: Mapping[str, DetectorConfig] = field(
        default_factory=lambda: types.MappingProxyType({"image_saliency": DetectorConfig()})
    )
    experiments: tuple[str, ...] = param(("table1",), choices=EXPERIMENTS, nonempty=True, unique=True)
    gradcam: GradCAMConfig = GradCAMConfig()
    adaptive: AdaptiveConfig = AdaptiveConfig()
    distribute: DistributeConfig = DistributeConfig()

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


DEFAULT_ARCHS = {
    "mnist": ("mnist_net_f", "mnist_net_d"),
    "cifar10": ("cifar10_net_f", "cifar10_net_d"),
    "imagenet10": ("vgg16_f", "vgg16_d"),
}

# ---------------------------------------------------------------------------------------------
# YAML loading
# ---------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe loader that also reads ``1e-3`` as a float (YAML 1.1 would make it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_MAX_YAML_BYTES = 1 << 20


def _yaml_load(text: str, source: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        # Bound alias expansion: a "billion laughs" YAML would otherwise explode our tree walk.
        if node is not None and _count_nodes(node, limit=100_000) > 100_000:
            raise ConfigError(f"{source}: YAML expands to more than 100000 nodes (alias bomb?)")
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: malformed YAML{where}: {problem}") from None
    finally:
        loader.dispose()


def _count_nodes(node: yaml.Node, *, limit: int) -> int:
    count, stack = 0, [node]
    while stack and count <= limit:
        n = stack.pop()
        count += 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
    return count


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], parsed value); the value is read as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. classifier.epochs=3")
    return key.strip().split("."), _yaml_load(value, f"--set {key}")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set {item!r}: key '{'.'.join(path[: i + 1])}' is a {type(child).__name__}, not a mapping"
                )
            node = child
        node[path[-1]] = value
    return raw


def load_config(path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> SuiteConfig:
    """Read, override and validate a suite YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: suite file not found")
    try:
        if p.stat().st_size > _MAX_YAML_BYTES:
            raise ConfigError(f"{p}: suite file larger than 1 MiB")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read suite file ({exc.__class__.__name__}: {exc})") from None
    raw = _yaml_load(text, str(p))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of suite keys at the top level, got {type(raw).__name__}")
    raw = apply_overrides(raw, list(overrides))
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> SuiteConfig:
    """Validate a plain mapping (as parsed from YAML) into a frozen :class:`SuiteConfig`.

    Relative data and model paths are taken from the current directory, like ``--set`` values.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"suite: expected a mapping, got {type(raw).__name__}")
    cfg = _build(SuiteConfig, raw, "")
    return _resolve(cfg)


def config_to_yaml(cfg: SuiteConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Generic builder
# ---------------------------------------------------------------------------------------------


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown(path: str, key: Any, valid: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(str(key), valid, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"config key '{_key(path, str(key))}': unknown key{suggestion} (expected one of: {', '.join(valid)})")


def _build(cls: type, raw: Any, path: str) -> Any:
    where = path or "suite"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key '{where}': expected a mapping, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise _unknown(path, key, list(fields))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = _key(path, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                raise ConfigError(f"config key '{key}': required, expected {_expected(hints[name])}")
            continue
        if path == "" and name == "attacks":
            values[name] = _build_attacks(raw[name], key)
        elif path == "" and name == "detectors":
            values[name] = _build_named(raw[name], key, DetectorConfig)
        else:
            values[name] = _convert(hints[name], raw[name], key)
        _check(values[name], f.metadata, key)
    return cls(**values)


def _build_attacks(raw: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"config key '{path}': expected a non-empty mapping of attack name -> settings, got {_describe(raw)}")
    out = {}
    for name, body in raw.items():
        body = dict(body or {}) if body is None or isinstance(body, Mapping) else body  # null: all defaults
        if not isinstance(body, dict):
            raise ConfigError(f"config key '{path}.{name}': expected a mapping of attack settings, got {_describe(body)}")
        kind = body.get("type", name)
        if kind not in ATTACK_CONFIGS:
            raise ConfigError(
                f"config key '{path}.{name}': unknown attack {kind!r}; expected one of {', '.join(ATTACK_CONFIGS)} "
                f"(or set 'type:' to one of them)"
            )
        body["type"] = kind
        out[str(name)] = _build(ATTACK_CONFIGS[kind], body, f"{path}.{name}")
    return types.MappingProxyType(out)


def _build_named(raw: Any, path: str, cls: type) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"config key '{path}': expected a non-empty mapping of name -> settings, got {_describe(raw)}")
    return types.MappingProxyType(
        {str(name): _build(cls, body, f"{path}.{name}") for name, body in raw.items()}
    )


def _expected(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_expected(typing.get_args(tp)[0])}s"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': expected {_expected(tp)}, got {_describe(value)}")
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(items))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"config key '{key}': expected a finite number, got {value}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key '{key}': expected {_expected(tp)}, got {_describe(value)}")


def _check(value: Any, meta: Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    items = list(value) if isinstance(value, tuple) else [value]
    if meta.get("nonempty") and isinstance(value, tuple) and not value:
        raise ConfigError(f"config key '{key}': expected a non-empty list, got []")
    if meta.get("unique") and isinstance(value, tuple) and len(set(value)) != len(value):
        raise ConfigError(f"config key '{key}': expected no repeated entries, got {list(value)}")
    for i, v in enumerate(items):
        k = f"{key}[{i}]" if isinstance(value, tuple) else key
        if "choices" in meta and v not in meta["choices"]:
            raise ConfigError(f"config key '{k}': expected one of {', '.join(meta['choices'])}, got {_describe(v)}")
        for op, test, word in (
            ("ge", lambda a, b: a >= b, ">="),
            ("gt", lambda a, b: a > b, ">"),
            ("le", lambda a, b: a <= b, "<="),
            ("lt", lambda a, b: a < b, "<"),
        ):
            if op in meta and isinstance(v, (int, float)) and not test(v, meta[op]):
                raise ConfigError(f"config key '{k}': expected a value {word} {meta[op]}, got {v}")
        if "pattern" in meta and not re.match(meta["pattern"], v):
            raise ConfigError(f"config key '{k}': expected letters, digits, '_', '-' or '.', got {_describe(v)}")
        if meta.get("target") and isinstance(v, str) and v not in ("random", "next"):
            raise ConfigError(f"config key '{k}': expected 'random', 'next' or a class index, got {_describe(v)}")
        if meta.get("target") and isinstance(v, int) and v < 0:
            raise ConfigError(f"config key '{k}': expected a class index >= 0, got {v}")
        if meta.get("model"):
            from .models import MODELS

            if v not in MODELS:
                raise ConfigError(f"config key '{k}': unknown model {v!r}; expected one of {', '.join(MODELS.names())}")


# ---------------------------------------------------------------------------------------------
# Cross-field resolution (defaults that depend on other keys; file checks)
# ---------------------------------------------------------------------------------------------


def _resolve(cfg: SuiteConfig) -> SuiteConfig:
    ds = cfg.dataset
    f_arch, d_arch = DEFAULT_ARCHS[ds.name]
    if ds.source == "sample" and ds.name != "mnist":
        raise ConfigError(f"config key 'dataset.source': 'sample' is available for mnist only, got dataset.name={ds.name!r}")
    if ds.source == "cifar_batches" and ds.name != "cifar10":
        raise ConfigError("config key 'dataset.source': 'cifar_batches' expects dataset.name: cifar10")
    if ds.source == "idx" and ds.name != "mnist":
        raise ConfigError("config key 'dataset.source': 'idx' expects dataset.name: mnist")
    if ds.source == "keras" and ds.name not in ("mnist", "cifar10"):
        raise ConfigError(f"config key 'dataset.source': 'keras' serves mnist and cifar10, got dataset.name={ds.name!r}")
    if ds.source in ("npz", "idx", "cifar_batches", "image_folder"):
        if ds.path is None:
            raise ConfigError(f"config key 'dataset.path': required for source {ds.source!r}, expected a file or folder path")
        must_be_dir = ds.source != "npz"
        p = Path(ds.path)
        if must_be_dir and not p.is_dir():
            raise ConfigError(f"config key 'dataset.path': expected an existing folder for source {ds.source!r}, got {ds.path!r}")
        if not must_be_dir and not p.is_file():
            raise ConfigError(f"config key 'dataset.path': expected an existing .npz file, got {ds.path!r}")
    if cfg.classifier.path is not None and not Path(cfg.classifier.path).is_file():
        raise ConfigError(f"config key 'classifier.path': expected an existing .keras file, got {cfg.classifier.path!r}")
    classifier = cfg.classifier if cfg.classifier.arch else dataclasses.replace(cfg.classifier, arch=f_arch)
    detectors = types.MappingProxyType(
        {n: d if d.arch else dataclasses.replace(d, arch=d_arch) for n, d in cfg.detectors.items()}
    )
    for name, a in cfg.attacks.items():
        if isinstance(a, JSMAConfig) and isinstance(a.target, int) and a.target >= 1000:
            raise ConfigError(f"config key 'attacks.{name}.target': expected a class index, got {a.target}")
    if "eps_generalization" in cfg.experiments and not any(hasattr(a, "eps") for a in cfg.attacks.values()):
        raise ConfigError("config key 'experiments': eps_generalization needs at least one attack with an 'eps' grid")
    for name, d in detectors.items():
        if d.arch == "metzen_d" and tuple(d.inputs) != ("image",):
            raise ConfigError(f"config key 'detectors.{name}.inputs': metzen_d reads f's activations of the image, "
                              f"expected [image], got {list(d.inputs)}")
        if d.layer is not None and d.arch != "metzen_d":
            raise ConfigError(f"config key 'detectors.{name}.layer': only arch metzen_d takes a layer, got arch {d.arch!r}")
        if d.image_filter != "none" and (d.arch == "metzen_d" or "image" not in d.inputs):
            why = "metzen_d feeds the image to f" if d.arch == "metzen_d" else "'image' is not among its inputs"
            raise ConfigError(f"config key 'detectors.{name}.image_filter': {why}; expected none, got {d.image_filter!r}")
    ad = cfg.adaptive
    for i, n in enumerate(ad.detectors or ()):
        if n not in detectors:
            raise ConfigError(f"config key 'adaptive.detectors[{i}]': unknown detector {n!r}; expected one of "
                              f"{', '.join(detectors)}")
    if ad.attacks and "table1" not in cfg.experiments:
        raise ConfigError("config key 'adaptive.attacks': adaptive attacks target the Table 1 detectors, "
                          "expected 'table1' in experiments")
    dist = cfg.distribute
    if isinstance(dist.devices, int) and dist.devices <= 0:
        raise ConfigError(f"config key 'distribute.devices': expected a count > 0 or a list of device names, got {dist.devices}")
    return dataclasses.replace(cfg, classifier=classifier, detectors=detectors)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    return obj
