"""Suite configuration: frozen dataclasses mirrored by the YAML, validated key by key.

The suite's own sections are here; each attack's, adaptive attack's and detector's section is the
config dataclass beside its code, found through the registries (``attacks.NAME.type`` and so on).
Every error is a one-line :class:`ConfigError` naming the key path, what was expected and what was
found, so that ``python -m advsal_bench validate`` and ``run`` exit with code 2 before writing
anything. The validated config is frozen and written next to the results.
"""
from __future__ import annotations

import dataclasses
import os
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .data.sources import DATASET_NAMES, SOURCES
from .errors import ConfigError
from .schema import apply_overrides, build, build_named, param, plain, unknown_key, yaml_load

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
_MAX_YAML_BYTES = 1 << 20

DEFAULT_ARCHS = {
    "mnist": ("mnist_net_f", "mnist_net_d"),
    "cifar10": ("cifar10_net_f", "cifar10_net_d"),
    "imagenet10": ("vgg16_f", "vgg16_d"),
}


@dataclass(frozen=True)
class DatasetConfig:
    name: str = param("mnist", choices=DATASET_NAMES)
    source: str = param("sample", choices=tuple(SOURCES))
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
    # "none" measured best for the [image, saliency] detector (docs/results.md, "Saliency scale").
    normalize: str = param("none", choices=("none", "per_image", "global"))


def _adaptive_names() -> list[str]:
    from .attacks import ADAPTIVE_ATTACKS

    return ADAPTIVE_ATTACKS.names()


def _adaptive_defaults() -> Mapping[str, Any]:
    from .attacks import ADAPTIVE_ATTACKS

    return types.MappingProxyType({name: spec.config() for name, spec in ADAPTIVE_ATTACKS.items()})


@dataclass(frozen=True)
class AdaptiveConfig:
    """White-box attacks on f and D together, run against each Table 1 detector.

    Each registered adaptive attack's settings are the key of its name (``adaptive.metzen``); they
    are kept in ``params`` and read as attributes (``cfg.adaptive.metzen.sigma``).
    """

    attacks: tuple[str, ...] = param((), choices=_adaptive_names, unique=True)
    detectors: tuple[str, ...] | None = param(None, nonempty=True)
    # The attacks whose Table 1 detectors are attacked (null: every attack's).
    fit_on: tuple[str, ...] | None = param(None, nonempty=True, unique=True)
    test_size: int = param(200, gt=0)
    batch_size: int = param(100, gt=0)
    # Gradient through the saliency map from a softplus(beta*z)/beta copy of f (null: f's own, which is
    # exactly zero almost everywhere for ReLU nets: gradient masking, not robustness).
    surrogate_beta: float | None = param(30.0, gt=0)
    params: Mapping[str, Any] = param(factory=_adaptive_defaults)

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"AdaptiveConfig has no attribute {name!r}")

    def __plain__(self) -> dict[str, Any]:
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "params"}
        return {**own, **dict(self.params)}


def _build_adaptive(raw: Any, key: str) -> AdaptiveConfig:
    from .attacks import ADAPTIVE_ATTACKS

    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key '{key}': expected a mapping, got {raw!r}")
    own = [f.name for f in dataclasses.fields(AdaptiveConfig) if f.name != "params"]
    for k in raw:
        if k not in own and k not in ADAPTIVE_ATTACKS:
            raise unknown_key(key, k, own + ADAPTIVE_ATTACKS.names())
    params = {name: build(spec.config, raw.get(name), f"{key}.{name}") for name, spec in ADAPTIVE_ATTACKS.items()}
    cfg = build(AdaptiveConfig, {k: v for k, v in raw.items() if k in own}, key)
    return dataclasses.replace(cfg, params=types.MappingProxyType(params))


@dataclass(frozen=True)
class GeneralizationConfig:
    """Whose eps and attack generalization matrices to compute (null: the paper's detector's, or the first)."""

    detectors: tuple[str, ...] | None = param(None, nonempty=True, unique=True)


@dataclass(frozen=True)
class GradCAMConfig:
    """Layers for the Grad-CAM analysis (null: a shallow, a middle and a deep layer of f)."""

    layers: tuple[str, ...] | None = param(None, nonempty=True)
    images: int = param(4, gt=0, le=32)


@dataclass(frozen=True)
class DistributeConfig:
    strategy: str = param("auto", choices=STRATEGIES)
    devices: int | tuple[str, ...] | None = param(None)
    cpu_devices: int | None = param(None, gt=0)
    cluster_resolver: str = param("tf_config", choices=("tf_config", "slurm"))
    # multi_worker: seconds without a heartbeat before a peer counts as lost, and how long workers wait
    # for each other at start-up (null: env ADVSAL_HEARTBEAT_TIMEOUT / ADVSAL_CLUSTER_TIMEOUT, else 10 / 300).
    heartbeat_timeout: float | None = param(None, gt=0)
    join_timeout: float | None = param(None, gt=0)
    # How f and D train: 'fit' (Keras model.fit), 'custom' (advsal_bench.training's loop, the same
    # arithmetic for 1 and N replicas), 'auto' (custom across workers, where model.fit cannot run, else fit).
    train_loop: str = param("auto", choices=("auto", "fit", "custom"))


def _attack_entry(name: str, body: dict, key: str) -> Any:
    from .attacks import build_attack_config

    return build_attack_config(name, body, key)


def _detector_entry(name: str, body: dict, key: str) -> Any:
    from .detectors import build_detector_config

    return build_detector_config(name, body, key)


def _default_attacks() -> Mapping[str, Any]:
    return types.MappingProxyType({"fgsm": _attack_entry("fgsm", {}, "attacks.fgsm")})


def _default_detectors() -> Mapping[str, Any]:
    return types.MappingProxyType({"image_saliency": _detector_entry("image_saliency", {}, "detectors.image_saliency")})


def _experiment_names() -> list[str]:
    from .experiments import listed_experiments

    return listed_experiments()


@dataclass(frozen=True)
class SuiteConfig:
    name: str = param(dataclasses.MISSING, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = param(0, ge=0)
    dataset: DatasetConfig = DatasetConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    attacks: Mapping[str, Any] = param(factory=_default_attacks, entries=_attack_entry)
    adversarial: AdversarialConfig = AdversarialConfig()
    epsilon_selection: EpsilonSelectionConfig = EpsilonSelectionConfig()
    saliency: SaliencyConfig = SaliencyConfig()
    detectors: Mapping[str, Any] = param(factory=_default_detectors, entries=_detector_entry)
    experiments: tuple[str, ...] = param(("table1",), choices=_experiment_names, nonempty=True, unique=True)
    generalization: GeneralizationConfig = GeneralizationConfig()
    gradcam: GradCAMConfig = GradCAMConfig()
    adaptive: AdaptiveConfig = param(factory=AdaptiveConfig, section=_build_adaptive)
    distribute: DistributeConfig = DistributeConfig()

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


# ---- loading ---------------------------------------------------------------------------------------


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
    raw = yaml_load(text, str(p))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of suite keys at the top level, got {type(raw).__name__}")
    return config_from_dict(apply_overrides(raw, list(overrides)))


def config_from_dict(raw: Mapping[str, Any]) -> SuiteConfig:
    """Validate a plain mapping (as parsed from YAML) into a frozen :class:`SuiteConfig`.

    Relative data and model paths are taken from the current directory, like ``--set`` values.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"suite: expected a mapping, got {type(raw).__name__}")
    return _resolve(build(SuiteConfig, raw, ""))


def config_to_yaml(cfg: SuiteConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


# ---- cross-field resolution (defaults that depend on other keys; file checks) --------------------------


def _check_dataset(ds: DatasetConfig) -> None:
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


def _resolve(cfg: SuiteConfig) -> SuiteConfig:
    from .detectors import detector_spec
    from .experiments import EXPERIMENTS

    _check_dataset(cfg.dataset)
    if cfg.classifier.path is not None and not Path(cfg.classifier.path).is_file():
        raise ConfigError(f"config key 'classifier.path': expected an existing .keras file, got {cfg.classifier.path!r}")
    if cfg.classifier.arch is None:
        cfg = dataclasses.replace(cfg, classifier=dataclasses.replace(cfg.classifier, arch=DEFAULT_ARCHS[cfg.dataset.name][0]))
    detectors = {n: detector_spec(d, f"detectors.{n}").resolve(d, cfg, f"detectors.{n}") for n, d in cfg.detectors.items()}
    cfg = dataclasses.replace(cfg, detectors=types.MappingProxyType(detectors))
    for i, n in enumerate(cfg.adaptive.fit_on or ()):
        if n not in cfg.attacks:
            raise ConfigError(f"config key 'adaptive.fit_on[{i}]': unknown attack {n!r}; expected one of "
                              f"{', '.join(cfg.attacks)}")
    for section, names in (("adaptive", cfg.adaptive.detectors), ("generalization", cfg.generalization.detectors)):
        for i, n in enumerate(names or ()):
            if n not in detectors:
                raise ConfigError(f"config key '{section}.detectors[{i}]': unknown detector {n!r}; expected one of "
                                  f"{', '.join(detectors)}")
    for name, spec in EXPERIMENTS.items():
        if spec.is_enabled(cfg):
            spec.validate(cfg)
    dist = cfg.distribute
    if isinstance(dist.devices, int) and dist.devices <= 0:
        raise ConfigError(f"config key 'distribute.devices': expected a count > 0 or a list of device names, got {dist.devices}")
    return cfg


__all__ = ["AdaptiveConfig", "AdversarialConfig", "ClassifierConfig", "DatasetConfig", "DistributeConfig",
           "EpsilonSelectionConfig", "GeneralizationConfig", "GradCAMConfig", "SaliencyConfig", "SuiteConfig", "build_named", "config_from_dict",
           "config_to_yaml", "load_config", "param"]
