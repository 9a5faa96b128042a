"""Suite config: loading, defaults, overrides, round trip, attack aliases, immutability."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from advsal_bench.attacks.fgsm import FGSMConfig
from advsal_bench.attacks.ifgsm import IFGSML2Config, IFGSMLinfConfig
from advsal_bench.attacks.jsma import JSMAConfig
from advsal_bench.config import ClassifierConfig, SuiteConfig, config_from_dict, config_to_yaml, load_config
from advsal_bench.detectors import LearnedDetectorConfig as DetectorConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_quick_yaml_loads():
    cfg = load_config(CONFIGS / "quick.yaml")
    assert isinstance(cfg, SuiteConfig)
    assert cfg.name == "quick"
    assert cfg.dataset.name == "mnist" and cfg.dataset.source == "sample"
    assert (cfg.dataset.train_size, cfg.dataset.test_size) == (4000, 1000)
    assert cfg.classifier.arch == "mnist_net_f" and cfg.classifier.learning_rate == 0.001
    assert list(cfg.attacks) == ["fgsm", "ifgsm_linf", "ifgsm_l2", "jsma"]
    assert isinstance(cfg.attacks["jsma"], JSMAConfig) and cfg.attacks["jsma"].gamma == 0.1
    assert isinstance(cfg.attacks["fgsm"], FGSMConfig)
    assert isinstance(cfg.attacks["ifgsm_linf"], IFGSMLinfConfig)
    assert isinstance(cfg.attacks["ifgsm_l2"], IFGSML2Config)
    assert cfg.attacks["ifgsm_l2"].eps == (1.0, 2.0, 3.0)
    assert set(cfg.detectors) == {"image_saliency", "image_only", "saliency_only"}
    assert cfg.detectors["saliency_only"].inputs == ("saliency",)
    assert cfg.experiments == ("table1", "eps_generalization", "attack_generalization")


def test_mnist_yaml_loads():
    cfg = load_config(CONFIGS / "mnist.yaml")
    assert cfg.name == "mnist" and isinstance(cfg.attacks["jsma"], JSMAConfig)
    assert cfg.attacks["jsma"].target == "random"
    assert "gradcam" in cfg.experiments


def test_minimal_suite_gets_defaults_and_mnist_archs(tmp_path):
    cfg = load_config(write(tmp_path, "name: tiny\n"))
    assert cfg.seed == 0
    assert cfg.classifier.arch == "mnist_net_f"
    assert cfg.classifier == dataclasses.replace(ClassifierConfig(), arch="mnist_net_f")
    assert dict(cfg.detectors) == {"image_saliency": DetectorConfig(arch="mnist_net_d")}
    assert dict(cfg.attacks) == {"fgsm": FGSMConfig()}
    assert cfg.experiments == ("table1",)


def test_archs_resolve_per_dataset(tmp_path):
    cfg = load_config(write(tmp_path, "name: c\ndataset: {name: cifar10, source: keras}\ndetectors: {a: {}, b: {arch: mnist_net_d}}\n"))
    assert cfg.classifier.arch == "cifar10_net_f"
    assert cfg.detectors["a"].arch == "cifar10_net_d"
    assert cfg.detectors["b"].arch == "mnist_net_d"  # an explicit arch is kept


def test_explicit_arch_is_kept(tmp_path):
    cfg = load_config(write(tmp_path, "name: c\nclassifier: {arch: cifar10_net_f}\n"))
    assert cfg.classifier.arch == "cifar10_net_f"


@pytest.mark.parametrize("text, value", [("1e-3", 0.001), ("1E-3", 0.001), ("5e-4", 0.0005), ("2.5e-2", 0.025), ("+1e-3", 0.001), ("1", 1.0)])
def test_scientific_notation_is_a_float(tmp_path, text, value):
    cfg = load_config(write(tmp_path, f"name: x\nclassifier: {{learning_rate: {text}}}\n"))
    assert type(cfg.classifier.learning_rate) is float
    assert cfg.classifier.learning_rate == pytest.approx(value)


def test_int_fields_stay_int_and_eps_become_floats(tmp_path):
    cfg = load_config(write(tmp_path, "name: x\nattacks: {fgsm: {eps: [1, 2e-1]}}\n"))
    assert cfg.attacks["fgsm"].eps == (1.0, 0.2)
    assert all(type(e) is float for e in cfg.attacks["fgsm"].eps)
    assert type(cfg.classifier.epochs) is int


def test_set_overrides(tmp_path):
    cfg = load_config(
        CONFIGS / "quick.yaml",
        overrides=[
            "classifier.epochs=3",
            "classifier.learning_rate=2e-4",
            "attacks.fgsm.eps=[0.05, 0.15]",  # list value
            "dataset.test_size=100",
            "detectors.extra.inputs=[saliency]",  # a new nested key
            "gradcam.layers=[conv1, conv2]",  # a new key under a section absent from the file
            "saliency.abs=true",
            "experiments=[table1]",
        ],
    )
    assert cfg.classifier.epochs == 3 and cfg.classifier.learning_rate == pytest.approx(2e-4)
    assert cfg.attacks["fgsm"].eps == (0.05, 0.15)
    assert cfg.dataset.test_size == 100
    assert cfg.detectors["extra"] == DetectorConfig(arch="mnist_net_d", inputs=("saliency",))
    assert "image_saliency" in cfg.detectors  # the other detectors are kept
    assert cfg.gradcam.layers == ("conv1", "conv2")
    assert cfg.saliency.abs is True
    assert cfg.experiments == ("table1",)


def test_set_creates_new_sections_and_later_wins(tmp_path):
    path = write(tmp_path, "name: x\n")
    cfg = load_config(path, ["attacks.big.type=fgsm", "attacks.big.eps=[0.3]", "seed=1", "seed=2"])
    # "attacks" was absent: the override creates it (replacing the default set of attacks).
    assert dict(cfg.attacks) == {"big": FGSMConfig(eps=(0.3,))}
    assert cfg.seed == 2
    # The file itself is untouched.
    assert path.read_text() == "name: x\n"


def test_set_value_with_equals_sign_and_null(tmp_path):
    # Only the first '=' separates key and value; the value is read as YAML (null -> None).
    cfg = load_config(write(tmp_path, "name: x\ndataset: {train_size: 10}\n"), ["dataset.train_size=null", "gradcam.layers=[a=b]"])
    assert cfg.dataset.train_size is None
    assert cfg.gradcam.layers == ("a=b",)


@pytest.mark.parametrize("name", ["quick.yaml", "mnist.yaml"])
def test_yaml_round_trip(name):
    cfg = load_config(CONFIGS / name)
    text = config_to_yaml(cfg)
    again = config_from_dict(yaml.safe_load(text))
    assert again == cfg
    assert config_to_yaml(again) == text


def test_round_trip_with_every_section(tmp_path):
    text = """
name: full
seed: 3
dataset: {name: mnist, source: sample, train_size: 100, test_size: 50}
classifier: {epochs: 1, batch_size: 32, learning_rate: 1e-3}
adversarial: {train_size: 20, test_size: 10}
attacks:
  small: {type: fgsm, eps: [0.1]}
  l2: {type: ifgsm_l2, eps: [1.0], steps: 3, alpha: 0.5}
  jsma: {target: 3, gamma: 0.05}
saliency: {abs: true, normalize: per_image}
detectors: {img: {inputs: [image], epochs: 0}}
experiments: [table1, gradcam]
gradcam: {layers: [conv1], images: 2}
distribute: {strategy: one_device, devices: 1}
"""
    cfg = load_config(write(tmp_path, text))
    assert config_from_dict(yaml.safe_load(config_to_yaml(cfg))) == cfg
    assert cfg.to_dict()["attacks"]["small"] == {"type": "fgsm", "eps": [0.1], "batch_size": 256}
    assert cfg.attacks["jsma"].target == 3
    assert cfg.distribute.devices == 1


def test_attack_type_alias(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            "name: x\nattacks:\n  fgsm_small: {type: fgsm, eps: [0.05]}\n  fgsm_big: {type: fgsm, eps: [0.3], batch_size: 8}\n"
            "  iter: {type: ifgsm_linf, steps: 3}\n  ifgsm_l2: null\n",
        )
    )
    assert list(cfg.attacks) == ["fgsm_small", "fgsm_big", "iter", "ifgsm_l2"]
    assert cfg.attacks["fgsm_small"] == FGSMConfig(eps=(0.05,))
    assert cfg.attacks["fgsm_big"] == FGSMConfig(eps=(0.3,), batch_size=8)
    assert cfg.attacks["iter"] == IFGSMLinfConfig(steps=3)
    assert cfg.attacks["ifgsm_l2"] == IFGSML2Config()  # an empty body takes every default
    assert cfg.attacks["fgsm_big"].type == "fgsm"


def test_config_is_frozen():
    cfg = load_config(CONFIGS / "quick.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.classifier.epochs = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.attacks["fgsm"].eps = (0.5,)  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.attacks["new"] = FGSMConfig()  # type: ignore[index]
    with pytest.raises(TypeError):
        cfg.detectors["new"] = DetectorConfig()  # type: ignore[index]
    assert isinstance(cfg.attacks["fgsm"].eps, tuple)


def test_config_from_dict_equals_load_config(tmp_path):
    raw = {"name": "x", "classifier": {"epochs": 2}, "attacks": {"fgsm": {"eps": [0.1]}}}
    assert config_from_dict(raw) == load_config(write(tmp_path, yaml.safe_dump(raw)))


def test_empty_file_needs_a_name(tmp_path):
    from advsal_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="'name': required"):
        load_config(write(tmp_path, ""))
    assert load_config(write(tmp_path, ""), ["name=from_cli"]).name == "from_cli"
