"""The ImageNet-10 suite (configs/imagenet10.yaml) end to end on a generated image folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from advsal_bench.config import load_config
from advsal_bench.suite import run_suite

SUITE = Path(__file__).resolve().parents[1] / "configs" / "imagenet10.yaml"


def _image_folder(root: Path, classes: tuple[str, ...], per_class: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    for k, wnid in enumerate(classes):
        folder = root / wnid
        folder.mkdir(parents=True)
        for i in range(per_class):
            # a class-coloured tint plus noise, so the labels carry some signal
            base = np.zeros((size, size, 3)) + 255 * np.array([(k % 3) / 2, (k // 3 % 3) / 2, (k // 9) / 1])
            img = np.clip(base * 0.6 + rng.integers(0, 100, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{wnid}_{i}.{'png' if i % 2 else 'jpg'}")
    return root


def _classes() -> tuple[str, ...]:
    return tuple(yaml.safe_load(SUITE.read_text())["dataset"]["classes"])


def _overrides(folder: Path, image_size: int, gamma: float) -> list[str]:
    return [
        f"dataset.path={folder}", f"dataset.image_size={image_size}",
        "classifier.weights=null", "classifier.epochs=1", "classifier.batch_size=8", "classifier.lr_decay_epochs=[]",
        "attacks={fgsm: {eps: [0.01, 0.05], batch_size: 8}, "
        f"jsma: {{theta: 1.0, gamma: {gamma}, target: next, batch_size: 8}}}}",
        "detectors={image_saliency: {arch: vgg16_d, epochs: 1, batch_size: 8}}",
        "experiments=[table1, attack_generalization, gradcam]",
    ]


def _run_suite(tmp_path: Path, *, image_size: int, source_size: int, gamma: float) -> None:
    """Run configs/imagenet10.yaml on a generated folder and check what the suite promises."""
    folder = _image_folder(tmp_path / "imgs", _classes(), per_class=2, size=source_size)
    out = tmp_path / "out"
    results = run_suite(load_config(SUITE, _overrides(folder, image_size, gamma=gamma)), out, verbose=0)
    assert results["data"]["num_classes"] == 10
    assert {r["attack"] for r in results["table1"]} == {"fgsm", "jsma"}
    j = results["attacks"]["jsma"]
    assert 0 < j["changed_fraction"] <= gamma + 1e-9
    assert results["environment"]["pairsearch_backend"] in ("native", "numpy", "cupy")
    assert set(results["gradcam"]["layers"]) == {"block2_conv1", "block4_conv1", "block5_pool"}
    assert json.loads((out / "results.json").read_text())["suite"] == "imagenet10"
    assert (out / "figures" / "gradcam.png").is_file()


def test_imagenet10_suite_small_images(tmp_path):
    """Loading, VGG16 training, FGSM, JSMA and Grad-CAM through the shipped suite, at 32x32 (seconds)."""
    _run_suite(tmp_path, image_size=32, source_size=40, gamma=0.005)


@pytest.mark.slow
def test_imagenet10_suite_224(tmp_path):
    """The same at the paper's 224x224, JSMA included (minutes on 2 CPU cores)."""
    _run_suite(tmp_path, image_size=224, source_size=256, gamma=0.0001)
