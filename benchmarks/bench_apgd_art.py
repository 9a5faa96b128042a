"""APGD against ART 1.20's AutoProjectedGradientDescent, and against PGD with a random start.

Model: mnist_net_f, trained on the 60,000 real MNIST training digits (IDX files) for a few epochs.
Attack set: the first 500 MNIST test digits, l_inf eps 0.3, labels = the true labels (accuracy
under attack is what both sides report), the same iterations and restarts on each side, ART's first
step 2 * eps as in the paper (its default eps_step of 0.1 is not the paper's).

Run: python benchmarks/bench_apgd_art.py [--out apgd_art.json] [--loss ce|dlr] [--epochs 3] [--weights f.weights.h5]
  or pytest benchmarks/bench_apgd_art.py -m slow -s
Needs adversarial-robustness-toolbox (benchmark-only, never a runtime dependency) and the data in
../shared/data/mnist beside the checkout (or --data / $ADVSAL_MNIST_DIR).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

DEFAULT_DATA = Path(os.environ.get("ADVSAL_MNIST_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))
ART_LOSSES = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}
TOLERANCE = 0.02  # ours may be at most this much less effective than ART's (accuracy points)


def load_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train from the IDX files, test from mnist_test.npz: float32 [N, 28, 28, 1] in [0, 1], int labels."""
    from advsal_bench.data.idx import IMAGES_MAGIC, LABELS_MAGIC, find_file, read_idx

    x_train = read_idx(find_file(folder, "train-images", "idx3"), IMAGES_MAGIC, 3)
    y_train = read_idx(find_file(folder, "train-labels", "idx1"), LABELS_MAGIC, 1)
    with np.load(folder / "mnist_test.npz", allow_pickle=False) as test:
        x_test, y_test = test["x"], test["y"]
    as_images = lambda a: (a.astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)  # noqa: E731
    return as_images(x_train), y_train.astype(np.int64), as_images(x_test), y_test.astype(np.int64)


def train_f(x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int = 0, weights: Path | None = None):
    """mnist_net_f trained on (x, y); with ``weights``, loaded from there if present, else saved there."""
    import keras

    from advsal_bench.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("mnist_net_f", (28, 28, 1), 10)
    if weights is not None and weights.is_file():
        model.load_weights(weights)
        return model
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    if weights is not None:
        model.save_weights(weights)
    return model


def pgd_random_start(model_fn, x, y, *, eps: float, steps: int, alpha: float, seed: int = 0):
    """Madry et al.'s PGD: a uniform start in the l_inf ball, then I-FGSM's steps (fgsm + projection)."""
    import tensorflow as tf

    from advsal_bench.attacks.fgsm import fgsm
    from advsal_bench.attacks.utils import project, random_start

    @tf.function
    def run(x, y):
        x_adv = random_start(x, np.inf, eps, tf.constant([seed, 0], tf.int64), 0.0, 1.0)
        for _ in tf.range(steps):
            x_adv = project(fgsm(model_fn, x_adv, eps=alpha, y=y), x, np.inf, eps, 0.0, 1.0)
        return x_adv

    return run(tf.constant(x), tf.constant(y, tf.int32))


def art_apgd(model, x, y, *, eps: float, steps: int, restarts: int, loss: str) -> np.ndarray:
    import keras
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    attack = AutoProjectedGradientDescent(
        classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps, targeted=False,
        nb_random_init=restarts, batch_size=len(x), loss_type=ART_LOSSES[loss], verbose=False,
    )
    return attack.generate(x, y=np.eye(10, dtype=np.float32)[y])


def _accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(np.asarray(x), batch_size=500, verbose=0), axis=1) == y))


def _timed(fn):
    start = time.perf_counter()
    out = np.asarray(fn())
    return out, time.perf_counter() - start


def run(*, data: Path = DEFAULT_DATA, n: int = 500, eps: float = 0.3, steps: int = 100, restarts: int = 1,
        loss: str = "ce", epochs: int = 3, seed: int = 0, weights: Path | None = None) -> dict:
    from advsal_bench.attacks.apgd import apgd

    x_train, y_train, x_test, y_test = load_mnist(data)
    loaded = weights is not None and weights.is_file()
    start = time.perf_counter()
    model = train_f(x_train, y_train, epochs=epochs, seed=seed, weights=weights)
    train_seconds = time.perf_counter() - start
    x, y = x_test[:n], y_test[:n]
    result = {
        "model": "mnist_net_f", "train_images": len(x_train), "epochs": epochs,
        "weights": "loaded" if loaded else "trained", "train_seconds": round(train_seconds, 1),
        "images": n, "norm": "linf", "eps": eps, "iterations": steps, "restarts": restarts, "loss": loss,
        "clean_accuracy": _accuracy(model, x, y),
    }
    ours, seconds = _timed(lambda: apgd(model, x, eps=eps, steps=steps, loss=loss, y=y, restarts=restarts, seed=seed))
    result["ours"] = {"accuracy": _accuracy(model, ours, y), "seconds": round(seconds, 1),
                      "max_linf": float(np.abs(ours - x).max())}
    theirs, seconds = _timed(lambda: art_apgd(model, x, y, eps=eps, steps=steps, restarts=restarts, loss=loss))
    result["art"] = {"accuracy": _accuracy(model, theirs, y), "seconds": round(seconds, 1),
                     "max_linf": float(np.abs(theirs - x).max()), "version": _art_version()}
    result["pgd"] = []
    # Madry et al.'s MNIST step (0.01), and this suite's I-FGSM default 2.5 * eps / steps.
    for alpha in (0.01, 2.5 * eps / steps):
        adv, seconds = _timed(lambda: pgd_random_start(model, x, y, eps=eps, steps=steps, alpha=alpha, seed=seed))
        result["pgd"].append({"alpha": alpha, "accuracy": _accuracy(model, adv, y), "seconds": round(seconds, 1)})
    result["ours_within_art_tolerance"] = result["ours"]["accuracy"] <= result["art"]["accuracy"] + TOLERANCE
    result["ours_at_least_pgd"] = all(result["ours"]["accuracy"] <= p["accuracy"] for p in result["pgd"])
    return result


def _art_version() -> str:
    import art

    return art.__version__


@pytest.mark.slow
def test_apgd_matches_art_and_beats_pgd():
    pytest.importorskip("art")
    if not (DEFAULT_DATA / "mnist_test.npz").is_file():
        pytest.skip(f"real MNIST not found in {DEFAULT_DATA}")
    result = run()
    print(json.dumps(result, indent=2))
    assert result["ours"]["max_linf"] <= 0.3 + 1e-6
    assert result["ours_within_art_tolerance"], result
    assert result["ours_at_least_pgd"], result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--loss", choices=sorted(ART_LOSSES), default="ce")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--weights", type=Path, help="f's weights (.weights.h5): loaded if present, else saved")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = run(data=args.data, n=args.n, eps=args.eps, steps=args.steps, restarts=args.restarts, loss=args.loss,
                 epochs=args.epochs, weights=args.weights)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if result["ours_within_art_tolerance"] and result["ours_at_least_pgd"] else 1


if __name__ == "__main__":
    sys.exit(main())
