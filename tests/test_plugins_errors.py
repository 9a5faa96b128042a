"""Plug-ins that break the protocol: one-line config errors naming the key, before any work."""
from __future__ import annotations

import pytest

from advsal_bench.config import config_from_dict
from advsal_bench.errors import ConfigError
from advsal_bench.suite import run_suite


def _attack(body: dict) -> dict:
    return {"name": "x", "attacks": {"mine": body}}


@pytest.mark.parametrize("body, match", [
    ({"type": "plugin_examples:missing_y", "eps": [0.1]}, r"'attacks.mine.type': plugin_examples:missing_y takes no argument 'y'"),
    ({"type": "plugin_examples:noisy_fgsm"}, r"'attacks.mine.eps': required by plugin_examples:noisy_fgsm"),
    ({"type": "plugin_examples:noisy_fgsm", "eps": [0.1], "power": 2}, r"'attacks.mine.power': plugin_examples:noisy_fgsm takes no argument 'power'"),
    ({"type": "plugin_examples:not_there", "eps": [0.1]}, r"'attacks.mine.type': module 'plugin_examples' has no attribute 'not_there'"),
    ({"type": "no_such_package.attacks:fgsm"}, r"'attacks.mine.type': cannot import 'no_such_package.attacks'"),
    ({"type": "plugin_examples:"}, r"'attacks.mine.type': expected a registered name or package.module:name"),
    ({"type": "plugin_examples:TRACES"}, r"'attacks.mine.type': expected a function \(model_fn, x, \*, y, eps, ...\)"),
    ({"type": "plugin_examples:noisy_fgsm", "eps": [0.1], "norm": "l1"}, r"'attacks.mine.norm': expected one of linf, l2"),
])
def test_bad_plugin_attacks(body, match):
    with pytest.raises(ConfigError, match=match) as err:
        config_from_dict(_attack(body))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("body, match", [
    ({"type": "plugin_examples:NoScore"}, r"'detectors.mine.type': plugin_examples:NoScore has no score\(\) method"),
    ({"type": "plugin_examples:MeanShift", "quantiles": 0.5}, r"'detectors.mine': plugin_examples:MeanShift cannot take \['quantiles'\]"),
    ({"type": "plugin_examples:nowhere"}, r"'detectors.mine.type': module 'plugin_examples' has no attribute 'nowhere'"),
    ({"type": "lidd"}, r"'detectors.mine.type': unknown detector 'lidd'; expected one of .*learned"),
])
def test_bad_plugin_detectors(body, match):
    with pytest.raises(ConfigError, match=match) as err:
        config_from_dict({"name": "x", "detectors": {"mine": body}})
    assert "\n" not in str(err.value)


SMALL = {
    "name": "bad_shapes", "seed": 0,
    "dataset": {"name": "mnist", "source": "sample", "train_size": 200, "test_size": 100},
    "classifier": {"epochs": 0, "batch_size": 64},
    "adversarial": {"train_size": 50, "test_size": 50, "chunk_size": 100},
    "experiments": ["table1"],
}


def test_an_attack_returning_another_shape_names_the_key(tmp_path):
    raw = {**SMALL, "attacks": {"flat": {"type": "plugin_examples:flattened", "eps": [0.1]}},
           "detectors": {"image_only": {"inputs": ["image"], "epochs": 1}}}
    with pytest.raises(ConfigError, match=r"'attacks.flat.type': plugin_examples:flattened returned images of shape \(100, 784\), expected the shape of x"):
        run_suite(config_from_dict(raw), tmp_path, verbose=0)


def test_a_detector_scoring_another_shape_names_the_key(tmp_path):
    raw = {**SMALL, "attacks": {"fgsm": {"eps": [0.1]}}, "detectors": {"bad": {"type": "plugin_examples:WrongScore"}}}
    with pytest.raises(ConfigError, match=r"'detectors.bad.type': score\(\) returned shape \(50, 2\), expected 50 finite scores"):
        run_suite(config_from_dict(raw), tmp_path, verbose=0)
