"""The dataset sources (``dataset.source``) and the module that loads each, imported on first use."""
from __future__ import annotations

SOURCES: dict[str, str] = {
    "sample": "sample",
    "keras": "keras_source",
    "npz": "npz",
    "idx": "idx",
    "cifar_batches": "cifar_batches",
    "image_folder": "image_folder",
}
DATASET_NAMES = ("mnist", "cifar10", "imagenet10")
