"""Bad hyperparameters, models and images for the baseline detectors: one-line errors that name the
parameter (or YAML key) and say what was expected and what was found."""
from __future__ import annotations

import re

import numpy as np
import pytest

from advsal_bench.errors import ConfigError
from advsal_bench.detectors import (
    FeatureSqueezingConfig, FeatureSqueezingDetector, KDBUConfig, KDBUDetector, LIDConfig, LIDDetector,
    MahalanobisDetector, arch_has_dropout,
)
from advsal_bench.detectors.features import ParamError


def _one_line(exc: pytest.ExceptionInfo, *parts: str) -> None:
    text = str(exc.value)
    assert "\n" not in text, text
    for part in parts:
        assert part in text, text


@pytest.fixture(scope="module")
def tiny_f():
    """An untrained f without dropout (errors need no training) and a few images."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(4, 3, strides=2, activation="relu", name="conv"),
        L.Flatten(name="flat"), L.Dense(16, activation="relu", name="fc"), L.Dense(10, name="logits")])
    x = np.random.default_rng(0).random((120, 28, 28, 1), dtype=np.float32)
    return model, x


@pytest.mark.parametrize("k, minibatch", [(100, 100), (150, 100), (2, 2)])
def test_lid_k_at_least_the_minibatch(k, minibatch):
    with pytest.raises(ParamError) as exc:
        LIDDetector(k=k, minibatch=minibatch)
    _one_line(exc, "k: expected an integer < minibatch", f"got {k}")
    with pytest.raises(ConfigError) as exc:
        LIDDetector.from_config(LIDConfig(k=k, minibatch=minibatch), key="detectors.lid")
    _one_line(exc, "config key 'detectors.lid.k'", f"minibatch ({minibatch})", f"got {k}")


@pytest.mark.parametrize("kwargs, where", [
    ({"k": 0}, "k: expected an integer >= 1, got 0"),
    ({"k": 2.5}, "k: expected an integer >= 1, got 2.5"),
    ({"minibatch": 1}, "minibatch: expected an integer >= 2, got 1"),
    ({"layers": []}, "layers: expected a non-empty list of layer names or null, got []"),
    ({"layers": ["conv", "conv"]}, "layers: expected no repeated layer names"),
    ({"seed": -1}, "seed: expected an integer >= 0, got -1"),
])
def test_lid_bad_hyperparameters(kwargs, where):
    with pytest.raises(ValueError) as exc:
        LIDDetector(**kwargs)
    _one_line(exc, where)


def test_lid_unknown_layer_name_lists_the_valid_ones(tiny_f):
    model, x = tiny_f
    with pytest.raises(ValueError) as exc:
        LIDDetector(layers=("conv", "pool9")).fit(x, x, model=model)
    _one_line(exc, "layers: expected names of f's layers (conv, flat, fc, logits)", "got 'pool9'")


def test_mahalanobis_unknown_layer_name(tiny_f):
    model, x = tiny_f
    with pytest.raises(ValueError) as exc:
        MahalanobisDetector(layers=("fc2",)).fit(x, x, model=model)
    _one_line(exc, "layers: expected names of f's layers", "got 'fc2'")


def test_lid_needs_a_full_minibatch_and_adversarial_images(tiny_f):
    model, x = tiny_f
    with pytest.raises(ValueError) as exc:
        LIDDetector().fit(x[:50], x[:50], model=model)
    _one_line(exc, "x_clean: expected at least minibatch (100) clean images, got 50")
    with pytest.raises(ValueError) as exc:
        LIDDetector().fit(x, None, model=model)
    _one_line(exc, "x_adv: expected adversarial images", "got None")


@pytest.mark.parametrize("depths", [(0,), (9,), (1, 16), (-1,), (2.0,)])
def test_bit_depth_outside_1_to_8(depths):
    with pytest.raises(ParamError) as exc:
        FeatureSqueezingDetector(bit_depths=depths)
    _one_line(exc, "bit_depths: expected integers in 1-8")
    with pytest.raises(ConfigError) as exc:
        FeatureSqueezingDetector.from_config(FeatureSqueezingConfig(bit_depths=depths), key="detectors.fs")
    _one_line(exc, "config key 'detectors.fs.bit_depths'")


@pytest.mark.parametrize("kwargs, where", [
    ({"median_sizes": (0,)}, "median_sizes: expected integers >= 1, got 0"),
    ({"median_sizes": (2, 2)}, "median_sizes: expected no repeated entries"),
    ({"fpr": 0.0}, "fpr: expected a finite number > 0 and < 1, got 0.0"),
    ({"fpr": 1.0}, "fpr: expected a finite number > 0 and < 1, got 1.0"),
    ({"dataset": "svhn"}, "dataset: expected one of mnist, cifar10, imagenet10 or null, got 'svhn'"),
])
def test_feature_squeezing_bad_hyperparameters(kwargs, where):
    with pytest.raises(ValueError) as exc:
        FeatureSqueezingDetector(**kwargs)
    _one_line(exc, where)


def test_feature_squeezing_needs_a_squeezer(tiny_f):
    model, x = tiny_f
    with pytest.raises(ValueError) as exc:
        FeatureSqueezingDetector(bit_depths=(), median_sizes=()).fit(x, None, model=model)
    _one_line(exc, "expected at least one squeezer", "got none")


@pytest.mark.parametrize("bandwidth", [0, -1.2, float("nan"), float("inf"), "1.2", True])
def test_kd_bu_bad_bandwidth(bandwidth):
    with pytest.raises(ParamError) as exc:
        KDBUDetector(bandwidth=bandwidth)
    _one_line(exc, "bandwidth: expected a finite number > 0", f"got {bandwidth!r}")
    with pytest.raises(ConfigError) as exc:
        KDBUDetector.from_config(KDBUConfig(bandwidth=bandwidth), key="detectors.kdbu")
    _one_line(exc, "config key 'detectors.kdbu.bandwidth'")


@pytest.mark.parametrize("kwargs, where", [
    ({"mc_samples": 0}, "mc_samples: expected an integer >= 1, got 0"),
    ({"dataset": "imagenet10"}, "dataset: expected one of mnist, cifar10, svhn or null, got 'imagenet10'"),
    ({"layer": 3}, "layer: expected a layer name or null, got 3"),
    ({"noise": "salt"}, "noise: expected one of auto, gaussian, flip or null, got 'salt'"),
])
def test_kd_bu_bad_hyperparameters(kwargs, where):
    with pytest.raises(ValueError) as exc:
        KDBUDetector(**kwargs)
    _one_line(exc, where)


def test_kd_bu_on_f_without_dropout_names_the_detector_key(tiny_f):
    model, x = tiny_f
    with pytest.raises(ConfigError) as exc:
        KDBUDetector.from_config(KDBUConfig(), key="detectors.kdbu").fit(x, x, model=model)
    _one_line(exc, "detectors.kdbu: expected a classifier f with a Dropout layer", "without one", "mnist_net_f_dropout")


def test_kd_bu_dropout_is_known_per_arch_before_building():
    assert arch_has_dropout("mnist_net_f_dropout") and not arch_has_dropout("mnist_net_f")
    with pytest.raises(ConfigError) as exc:
        arch_has_dropout("mnist_net_g")
    _one_line(exc, "unknown model 'mnist_net_g'", "mnist_net_f_dropout")


def test_kd_bu_default_bandwidth_needs_a_known_input_shape():
    with pytest.raises(ParamError) as exc:
        KDBUDetector().resolve_bandwidth((64, 64, 3))
    _one_line(exc, "bandwidth: expected a value for f's input shape (64, 64, 3)", "mnist 1.20", "got null")
    assert KDBUDetector().resolve_bandwidth((28, 28, 1)) == 1.20
    assert KDBUDetector().resolve_bandwidth((32, 32, 3)) == 0.26
    assert KDBUDetector(dataset="svhn").resolve_bandwidth((32, 32, 3)) == 1.00


def test_mahalanobis_bad_noise_magnitude():
    for value in (-0.001, float("nan"), None):
        with pytest.raises(ParamError) as exc:
            MahalanobisDetector(noise_magnitude=value)
        _one_line(exc, "noise_magnitude: expected a finite number >= 0", f"got {value!r}")


DETECTORS = [LIDDetector, MahalanobisDetector, FeatureSqueezingDetector]


@pytest.mark.parametrize("cls", DETECTORS)
def test_wrong_image_shapes(cls, tiny_f):
    model, x = tiny_f
    with pytest.raises(ValueError) as exc:
        cls().fit(np.zeros((120, 32, 32, 3), np.float32), x, model=model)
    _one_line(exc, "x_clean: expected images of shape [N, 28, 28, 1] (f's input), got (120, 32, 32, 3)")
    with pytest.raises(ValueError) as exc:
        cls().fit(x[:, :, :, 0], x, model=model)
    _one_line(exc, "x_clean: expected an image batch of 4 dims", "got shape (120, 28, 28)")
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError) as exc:
        cls().fit(bad, x, model=model)
    _one_line(exc, "x_clean: expected finite values")
    det = cls().fit(x, x, model=model)
    with pytest.raises(ValueError) as exc:
        det.score(np.zeros((3, 28, 28, 3), np.float32))
    _one_line(exc, "x: expected images of shape [N, 28, 28, 1] (f's input), got (3, 28, 28, 3)")


@pytest.mark.parametrize("cls", [*DETECTORS, KDBUDetector])
def test_score_before_fit(cls):
    with pytest.raises(RuntimeError, match=re.escape(f"{cls.__name__}: call fit (or load) before score or margin")):
        cls().score(np.zeros((1, 28, 28, 1), np.float32))


def test_load_checks_the_stored_type(tiny_f, tmp_path):
    model, x = tiny_f
    FeatureSqueezingDetector().fit(x, None, model=model).save(tmp_path / "fs")
    with pytest.raises(ValueError) as exc:
        LIDDetector.load(tmp_path / "fs", model=model)
    _one_line(exc, "expected a stored lid detector", "got type 'feature_squeezing'")
    with pytest.raises(ValueError) as exc:
        LIDDetector.load(tmp_path / "missing", model=model)
    _one_line(exc, "expected a stored lid detector with detector.json")


def test_statistical_detectors_need_a_keras_model():
    with pytest.raises(TypeError) as exc:
        LIDDetector().fit(np.zeros((120, 28, 28, 1), np.float32), None, model=lambda x: x)
    _one_line(exc, "model: expected a keras.Model (its layer activations are read), got function")


def test_bad_labels(tiny_f):
    model, x = tiny_f
    with pytest.raises(ValueError) as exc:
        MahalanobisDetector().fit(x, x, model=model, y_clean=np.full(len(x), 10))
    _one_line(exc, "y_clean: expected 120 integer labels in 0..9")


def test_kd_bu_noisy_negatives_need_one_clean_image_per_adversarial_one():
    import keras

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dropout(0.5),
                              keras.layers.Dense(3)])
    x = np.random.default_rng(0).random((6, 4, 4, 1), dtype=np.float32)
    with pytest.raises(ValueError) as exc:
        KDBUDetector(mc_samples=2, bandwidth=1.0).fit(x[:4], x, model=model)
    _one_line(exc, "x_adv: expected at most one adversarial image per clean image")
