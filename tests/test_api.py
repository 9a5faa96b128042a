"""The Python API as a user meets it: the README's example, and one result type for every attack."""
from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

import advsal_bench
from advsal_bench.attacks import ATTACKS, AttackResult

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs_and_does_what_it_says():
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)  # noqa: S102 - the documented example itself
    x, pgd, jsma, maps, scores = (scope[k] for k in ("x", "pgd", "jsma", "maps", "scores"))
    assert isinstance(pgd, AttackResult) and isinstance(jsma, AttackResult)
    assert pgd.x_adv.dtype == np.float32 and pgd.x_adv.shape == x.shape and pgd.success.mean() > 0.5
    assert np.abs(pgd.x_adv - x).max() <= 0.2 + 1e-6
    assert (jsma.info["target"] != jsma.info["y"]).all()
    assert maps.shape == x.shape and np.abs(maps).sum() > 0
    assert scores.shape == (2 * len(x),)
    # the paper's detector, fit on FGSM, tells PGD images from clean ones far better than chance
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(np.r_[np.zeros(len(x)), np.ones(len(x))], scores) > 0.8


@pytest.fixture(scope="module")
def small_model():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (256, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(np.int64) + 2 * (x[..., 0, 0, 0] > 0.5)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(4)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, verbose=0)
    return model, x[:24]


PARAMS = {"apgd": {"eps": 0.3, "steps": 5}, "fgsm": {"eps": 0.3}, "ifgsm_linf": {"eps": 0.3, "steps": 3}, "ifgsm_l2": {"eps": 2.0, "steps": 3},
          "pgd": {"eps": 0.3, "steps": 3}, "jsma": {"gamma": 0.2}, "cw_l2": {"steps": 10, "binary_search_steps": 2}}


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_registered_attack_returns_the_one_result_type(small_model, name):
    model, x = small_model
    r = getattr(advsal_bench.attacks, name)(model, x, **PARAMS[name])
    assert isinstance(r, AttackResult)
    assert r.x_adv.dtype == np.float32 and r.x_adv.shape == x.shape
    assert r.success.dtype == bool and r.success.shape == (len(x),)
    assert r.info["attack"] == name and (r.info["y"] == model.predict(x, verbose=0).argmax(-1)).all()
    pred = model.predict(r.x_adv, verbose=0).argmax(-1)
    want = pred == r.info["target"] if name == "jsma" else pred != r.info["y"]
    np.testing.assert_array_equal(r.success, want)
    assert r.success.any()


def test_y_is_the_label_to_move_away_from(small_model):
    model, x = small_model
    y = (model.predict(x, verbose=0).argmax(-1) + 1) % 4  # not what f says: moving away is then a no-op
    r = advsal_bench.attacks.jsma(model, x, y=y, gamma=0.2)
    assert (r.info["target"] != y).all() and (r.info["y"] == y).all()
    r = advsal_bench.attacks.fgsm(model, x, y=y, eps=0.3)
    np.testing.assert_array_equal(r.success, model.predict(r.x_adv, verbose=0).argmax(-1) != y)


def test_any_callable_from_images_to_logits_is_a_model(small_model):
    model, x = small_model
    as_keras = advsal_bench.attacks.pgd(model, x, eps=0.1, steps=2, seed=3)
    as_callable = advsal_bench.attacks.pgd(lambda t: model(t, training=False), x, eps=0.1, steps=2, seed=3)
    np.testing.assert_allclose(as_callable.x_adv, as_keras.x_adv, atol=1e-6)
    np.testing.assert_allclose(advsal_bench.saliency_map(lambda t: model(t), x), advsal_bench.saliency_map(model, x),
                               atol=1e-6)
