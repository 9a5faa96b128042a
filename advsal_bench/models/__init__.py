"""Model registry: ``MODELS.get(name)(input_shape, num_outputs, **options) -> keras.Model``.

Classifiers (``*_f``) output logits over the classes; detectors (``*_d``) output one logit whose
sigmoid is the probability that the input is adversarial.
"""
from __future__ import annotations

from ..registry import Registry

MODELS: Registry = Registry("model")

from . import cifar10_net, metzen_detector, mnist_net, residual, vgg16  # noqa: E402,F401  (registration side effects)

__all__ = ["MODELS", "build_model"]


def build_model(name: str, input_shape: tuple[int, ...], num_outputs: int, **options):
    return MODELS.get(name)(tuple(input_shape), num_outputs, **options)
