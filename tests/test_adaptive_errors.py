"""Bad hyperparameters of the adaptive attacks, C&W and Metzen's detector: one clear ValueError each."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks import make_detector_fn
from advsal_bench.attacks.cw_detector import cw_detector
from advsal_bench.attacks.cw_l2 import cw_l2
from advsal_bench.attacks.metzen import metzen_adaptive
from advsal_bench.errors import ConfigError
from advsal_bench.models import build_model
from advsal_bench.models.metzen_detector import build_metzen_detector

X = np.full((2, 4, 4, 1), 0.5, np.float32)


def _f(x):
    return tf.reshape(x, [tf.shape(x)[0], -1])[:, :3]


def _detector_fn(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


@pytest.mark.parametrize("sigma", [-0.1, 1.5, float("nan")])
def test_metzen_sigma_outside_unit_interval(sigma):
    with pytest.raises(ValueError, match=r"sigma: expected 0 <= sigma <= 1, got"):
        metzen_adaptive(_f, _detector_fn, X, eps=0.1, sigma=sigma)


@pytest.mark.parametrize("eps", [0.0, -0.1])
def test_metzen_eps_not_positive(eps):
    with pytest.raises(ValueError, match=r"eps: expected > 0, got"):
        metzen_adaptive(_f, _detector_fn, X, eps=eps, sigma=0.5)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_steps_below_one_or_not_an_integer(steps):
    with pytest.raises(ValueError, match=r"steps: expected an integer >= 1, got"):
        metzen_adaptive(_f, _detector_fn, X, eps=0.1, sigma=0.5, steps=steps)
    with pytest.raises(ValueError, match=r"steps: expected an integer >= 1, got"):
        cw_l2(_f, X, steps=steps)
    with pytest.raises(ValueError, match=r"steps: expected an integer >= 1, got"):
        cw_detector(_f, _detector_fn, X, steps=steps)
    with pytest.raises(ValueError, match=r"binary_search_steps: expected an integer >= 1, got"):
        cw_l2(_f, X, binary_search_steps=steps)


@pytest.mark.parametrize("norm", [1, 0, "inf", None])
def test_metzen_unknown_norm(norm):
    with pytest.raises(ValueError, match=r"norm: expected np.inf or 2, got"):
        metzen_adaptive(_f, _detector_fn, X, eps=0.1, sigma=0.5, norm=norm)


def test_cw_bad_constants():
    with pytest.raises(ValueError, match=r"kappa: expected >= 0, got -1"):
        cw_l2(_f, X, kappa=-1.0)
    with pytest.raises(ValueError, match=r"c_init: expected > 0, got 0"):
        cw_l2(_f, X, c_init=0.0)
    with pytest.raises(ValueError, match=r"learning_rate: expected > 0, got"):
        cw_l2(_f, X, learning_rate=0.0)
    with pytest.raises(ValueError, match=r"clip_min < clip_max: expected true"):
        cw_l2(_f, X, clip_min=1.0, clip_max=0.0)
    with pytest.raises(ValueError, match=r"c: expected > 0, got -2"):
        cw_detector(_f, _detector_fn, X, c=-2.0)
    with pytest.raises(ValueError, match=r"kappa: expected >= 0, got"):
        cw_detector(_f, _detector_fn, X, kappa=-0.5)


def _tiny_conv_f() -> keras.Model:
    return keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="conv1"), keras.layers.Flatten(name="flatten"),
         keras.layers.Dense(3, name="logits")],
        name="tiny_conv_f",
    )


def test_unknown_metzen_layer_lists_the_valid_ones():
    f = build_model("mnist_net_f", (28, 28, 1), 10)
    with pytest.raises(ValueError, match=r"layer: expected one of conv1, pool1, conv2, pool2 .*got 'conv9'"):
        build_metzen_detector(f, "conv9")
    # A layer without a spatial map (dense) cannot feed a conv head.
    with pytest.raises(ValueError, match=r"layer: expected one of conv1, pool1, conv2, pool2 .*got 'fc1'"):
        build_metzen_detector(f, "fc1")


def test_metzen_detector_needs_a_layer_for_unknown_models_and_sane_filters():
    f = _tiny_conv_f()
    with pytest.raises(ValueError, match=r"layer: expected a layer name for model 'tiny_conv_f' .*conv1.*got None"):
        build_metzen_detector(f)
    with pytest.raises(ValueError, match=r"filters: expected three positive conv widths, got"):
        build_metzen_detector(f, "conv1", filters=(4, 4))
    with pytest.raises(ValueError, match=r"f: expected the trained classifier"):
        build_model("metzen_d", (8, 8, 1), 1)
    with pytest.raises(ValueError, match=r"input_shape: expected f's input shape \(8, 8, 1\), got \(4, 4, 1\)"):
        build_model("metzen_d", (4, 4, 1), 1, f=f)


@pytest.mark.parametrize(
    "inputs,message",
    [
        ("image", r"inputs: expected a tuple of names from \('image', 'saliency'\), got 'image'"),
        ((), r"inputs: expected a non-empty tuple"),
        (("image", "gradcam"), r"inputs: expected names from \('image', 'saliency'\), got 'gradcam'"),
        (("saliency", "saliency"), r"inputs: expected each name at most once, got \('saliency', 'saliency'\)"),
    ],
)
def test_bad_detector_inputs(inputs, message):
    with pytest.raises(ValueError, match=message):
        make_detector_fn(lambda t: t, _f, inputs=inputs)


def test_bad_saliency_normalization():
    with pytest.raises(ValueError, match=r"saliency_normalize: expected one of none, per_image, global, got 'l2'"):
        make_detector_fn(lambda t: t, _f, saliency_normalize="l2")
    for scale in (None, 0.0, -1.0):
        with pytest.raises(ValueError, match=r"saliency_scale: expected the positive scale .* got"):
            make_detector_fn(lambda t: t, _f, saliency_normalize="global", saliency_scale=scale)


def test_unknown_adaptive_attack_name_lists_the_registered_ones():
    from advsal_bench.attacks import ADAPTIVE_ATTACKS
    from advsal_bench.config import config_from_dict

    with pytest.raises(ConfigError) as err:
        config_from_dict({"name": "x", "adaptive": {"attacks": ["bpda"]}})
    assert "adaptive.attacks[0]" in str(err.value) and "'bpda'" in str(err.value)
    assert all(name in str(err.value) for name in ADAPTIVE_ATTACKS.names())


def test_surrogate_beta_must_be_positive():
    from advsal_bench.models.surrogate import softplus_surrogate

    with pytest.raises(ValueError, match=r"beta: expected > 0, got 0"):
        softplus_surrogate(_tiny_conv_f(), beta=0.0)
