"""The pipeline: config -> data -> f -> attacks -> saliency -> detectors -> evaluation -> results dict.

No printing here beyond Keras progress bars: the caller passes ``log`` for stage messages and
``verbose`` for progress bars. Output files are written only after the data has loaded, and
``results.json`` is written last and atomically, so a failed run never leaves complete-looking
results behind.
"""
from __future__ import annotations

import dataclasses
import platform
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from . import __version__
from .attacks import cw_l2, fgsm, ifgsm_l2, ifgsm_linf
from .attacks.ifgsm import default_alpha
from .config import EPS_FREE_ATTACKS, JSMAConfig, SuiteConfig, config_to_yaml
from .data import Dataset, load_dataset
from .detectors import balanced_set, detector_input, detector_scores, scorer, train_detector
from .distribute import barrier, describe, get_strategy, local_strategy, run_batched, worker_info
from .errors import InputError, NumericalError
from .metrics import accuracy, detection_metrics, operating_point_metrics
from .models import build_model
from .saliency import fit_global_scale, gradient_saliency, normalize_saliency
from .training import TrainSetup, check_batch_sizes, resolve_loop, train_model
from .store import StageStore, array_digest, fingerprint, save_keras, sha256_file, write_json, write_text

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Victim:
    """f as the adaptive attacks need it: the model, its stage key, logits and saliency functions, and
    the saliency normalization D was trained with."""

    model: keras.Model
    key: str
    fn: Callable[[tf.Tensor], tf.Tensor]
    saliency_fn: Callable[[tf.Tensor], tf.Tensor]
    normalize: Callable[[np.ndarray], np.ndarray]
    scale: float | None


@dataclasses.dataclass
class AdvSet:
    """Adversarial train/test images for one (attack, eps) with their saliency maps and store keys."""

    x_train: np.ndarray
    x_test: np.ndarray
    s_train: np.ndarray
    s_test: np.ndarray
    f_adv: float
    images_per_second: float
    key: str
    saliency_key: str
    fooled: np.ndarray  # test images f classifies correctly clean and wrongly after the attack
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def _seed_for(seed: int, *parts: object) -> int:
    """A per-stage seed that depends only on the suite seed and the stage's name."""
    return (seed * 1_000_003 + zlib.crc32("/".join(map(str, parts)).encode())) % (2**31 - 1)


def _check_finite(array: np.ndarray, stage: str, batch_size: int) -> None:
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise NumericalError(
            f"{stage}: NaN/Inf in {int(bad.sum())} of {len(array)} outputs (first in batch {first // batch_size}, image {first})"
        )


class _Progress:
    """A Keras progress bar over images (or nothing when verbose=0)."""

    def __init__(self, total: int, verbose: int, label: str, log: Log) -> None:
        self.bar = None
        if verbose and total:
            log(label)
            self.bar = keras.utils.Progbar(total, verbose=1, unit_name="image")
        self.done = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.done)


def run_suite(
    cfg: SuiteConfig,
    output_dir: str | Path,
    *,
    verbose: int = 1,
    log: Log | None = None,
    dataset: Dataset | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Run a validated suite end to end and write results.json, report.md, config.yaml and stages.json.

    In a multi-worker run every worker calls this; worker 0 writes the outputs and returns the full
    results, the others return what they computed, with ``"worker": index`` and nothing written.

    Every stage's output is kept in ``<output_dir>/store`` keyed by what it depends on, so a rerun
    reuses finished work (``fresh=True`` recomputes everything).
    """
    log = log or (lambda msg: None)
    out = Path(output_dir)
    t_start = time.perf_counter()
    cluster = get_strategy(cfg.distribute)
    # Each worker computes on its own devices (``strategy``): its share of each chunked stage, and
    # on worker 0 the whole-stage work (evaluation). Training f and D spans all workers
    # (``training.strategy``); otherwise ``cluster`` only synchronizes workers.
    strategy = local_strategy(cluster)
    index, workers, chief = worker_info(cluster)
    training = TrainSetup(cluster if workers > 1 else strategy, resolve_loop(cfg.distribute.train_loop, workers),
                          collective=workers > 1)
    check_batch_sizes({"classifier.batch_size": cfg.classifier.batch_size,
                       **{f"detectors.{n}.batch_size": d.batch_size for n, d in cfg.detectors.items()}}, training)
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()

    data = dataset if dataset is not None else load_dataset(cfg.dataset, seed=cfg.seed)
    log(f"data: {cfg.dataset.name} ({data.source}) train {len(data.x_train)}, test {len(data.x_test)}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if chief:
            (out / "results.json").unlink(missing_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot write to the output directory ({exc.strerror or exc})") from None
    if chief:
        write_text(out / "config.yaml", config_to_yaml(cfg))
    store = StageStore(out / "store", reuse=not fresh, log=log, worker=(index, workers),
                       sync=(lambda: barrier(cluster)) if workers > 1 else None)
    # The data's content, not its path, is what downstream stages depend on.
    data_key = array_digest(data.x_train, data.y_train, data.x_test, data.y_test)

    timings: dict[str, float] = {}
    throughput: dict[str, float] = {}

    # ---- classifier f ------------------------------------------------------------------------
    t0 = time.perf_counter()
    f, f_key = _classifier(cfg, data, data_key, strategy, training, store, verbose, log)
    if chief:
        save_keras(f, out / "models" / "f.keras")
    model_fn = _model_fn(f)
    bs = cfg.classifier.batch_size
    train_logits = run_batched(strategy, model_fn, [data.x_train], batch_size=bs)[0]
    test_logits = run_batched(strategy, model_fn, [data.x_test], batch_size=bs)[0]
    _check_finite(test_logits, "classifier logits", bs)
    classifier = {"train_accuracy": accuracy(train_logits, data.y_train), "test_accuracy": accuracy(test_logits, data.y_test)}
    timings["classifier"] = time.perf_counter() - t0
    log(f"classifier: train accuracy {classifier['train_accuracy']:.4f}, test accuracy {classifier['test_accuracy']:.4f}")

    # ---- clean saliency on the adversarial subsets ----------------------------------------------
    n_tr = min(cfg.adversarial.train_size or len(data.x_train), len(data.x_train))
    n_te = min(cfg.adversarial.test_size or len(data.x_test), len(data.x_test))
    x_tr, x_te, y_te = data.x_train[:n_tr], data.x_test[:n_te], data.y_test[:n_te]
    y_tr = data.y_train[:n_tr]
    f_clean = accuracy(test_logits[:n_te], y_te)
    clean_correct = test_logits[:n_te].argmax(-1) == y_te
    sal_fn = _saliency_fn(model_fn, cfg.saliency.abs)

    def saliency_stage(name: str, upstream: str, parts: dict[str, np.ndarray], progress: int
                       ) -> tuple[dict[str, np.ndarray], float, str]:
        stage = store.stage(name, upstream, cfg.saliency.method, cfg.saliency.abs, cfg.adversarial.chunk_size)
        x_all = np.concatenate(list(parts.values()))
        bar = _Progress(len(x_all), progress, name, log)

        def compute(start: int, stop: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            t = time.perf_counter()
            maps = _saliency(strategy, sal_fn, x_all[start:stop], bs, 0, log, f"{name} (images {start}..{stop - 1})")
            bar(stop - start)
            return {"s": maps}, {"seconds": time.perf_counter() - t}

        arrays, values = store.chunked(stage, len(x_all), cfg.adversarial.chunk_size, compute)
        bounds = np.cumsum([0] + [len(x) for x in parts.values()])
        maps = {k: arrays["s"][bounds[i] : bounds[i + 1]] for i, k in enumerate(parts)}
        return maps, sum(v["seconds"] for v in values), stage.key

    maps, sal_seconds, clean_sal_key = saliency_stage(
        "saliency:clean", fingerprint(f_key, n_tr, n_te), {"train": x_tr, "test": x_te}, verbose)
    s_tr_raw, s_te_raw = maps["train"], maps["test"]
    throughput["saliency"] = (n_tr + n_te) / max(sal_seconds, 1e-9)
    scale = fit_global_scale(s_tr_raw) if cfg.saliency.normalize == "global" else None
    norm = lambda s: normalize_saliency(s, cfg.saliency.normalize, scale=scale)  # noqa: E731
    s_tr, s_te = norm(s_tr_raw), norm(s_te_raw)
    val_split, x_val = _validation_split(data, n_tr, n_te, cfg.adversarial.validation_size)
    if cfg.adversarial.validation_size and not len(x_val):
        log("validation: no clean images left beyond the adversarial subsets; tpr_at_5_fpr is n/a")
    s_val = x_val
    if len(x_val):
        s_val = norm(saliency_stage("saliency:validation", fingerprint(f_key, val_split, len(x_val)), {"val": x_val},
                                    0)[0]["val"])

    # ---- attacks ------------------------------------------------------------------------------
    def rows(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels ``start:stop`` of the train subset followed by the test subset."""
        idx = np.arange(start, stop)
        tr, te = idx[idx < n_tr], idx[idx >= n_tr] - n_tr
        return np.concatenate([x_tr[tr], x_te[te]]), np.concatenate([y_tr[tr], y_te[te]])

    adv: dict[tuple[str, float | None], AdvSet] = {}
    attacks_out: dict[str, Any] = {}
    pairsearch_backend = None
    chunk = cfg.adversarial.chunk_size
    for name, acfg in cfg.attacks.items():
        t0 = time.perf_counter()
        params = {k: v for k, v in dataclasses.asdict(acfg).items() if k not in ("eps", "backend")}
        if isinstance(acfg, JSMAConfig):
            from .pairsearch import resolve_backend

            pairsearch_backend = resolve_backend(acfg.backend)
        eps_free = acfg.type in EPS_FREE_ATTACKS
        grid: tuple[float | None, ...] = (None,) if eps_free else acfg.eps
        by_eps: dict[str, float] = {}
        for eps in grid:
            label = name if eps is None else f"{name} eps={eps}"
            stage = store.stage(f"attack:{name}" + ("" if eps is None else f":eps={eps:g}"),
                                f_key, params, eps, n_tr, n_te, chunk, cfg.seed)
            progress = _Progress(n_tr + n_te, verbose, label, log)
            if isinstance(acfg, JSMAConfig):
                compute = _jsma_chunk(cfg, name, acfg, model_fn, rows, data.num_classes, progress)
            else:
                consts = () if eps is None else _attack_constants(acfg, eps)
                compute = _attack_chunk(strategy, _attack_fn(model_fn, acfg), consts, rows, acfg.batch_size,
                                        progress, label)
            arrays, chunk_values = store.chunked(stage, n_tr + n_te, chunk, compute)
            x_adv = arrays["x"]
            seconds = sum(v["seconds"] for v in chunk_values)
            maps, _, sal_key = saliency_stage(f"saliency:{name}" + ("" if eps is None else f":eps={eps:g}"), stage.key,
                                              {"train": x_adv[:n_tr], "test": x_adv[n_tr:]}, 0)
            s_adv_tr, s_adv_te = maps["train"], maps["test"]
            adv_pred = run_batched(strategy, model_fn, [x_adv[n_tr:]], batch_size=bs)[0].argmax(-1)
            f_adv = accuracy(adv_pred, y_te)
            extra: dict[str, Any] = {}
            if isinstance(acfg, JSMAConfig):
                extra = {"success_rate": float(np.mean(arrays["success"][n_tr:])),
                         "changed_fraction": float(np.mean(arrays["changed"][n_tr:]))}
                timings[f"attack:{name}:jacobian"] = sum(v["seconds_jacobian"] for v in chunk_values)
                timings[f"attack:{name}:pairsearch"] = sum(v["seconds_pairsearch"] for v in chunk_values)
                log(f"attack {name}: f accuracy {f_adv:.4f}, success {extra['success_rate']:.3f}, "
                    f"changed {extra['changed_fraction']:.4f} of features")
            else:
                if eps is not None:
                    by_eps[_eps_key(eps)] = f_adv
                else:
                    delta = (x_adv[n_tr:] - x_te).reshape(n_te, -1)
                    extra = {"success_rate": float(np.mean((adv_pred != y_te) & clean_correct) / max(np.mean(clean_correct), 1e-12)),
                             "mean_l2": float(np.mean(np.linalg.norm(delta, axis=1)))}
                log(f"attack {label}: f accuracy {f_adv:.4f}")
            adv[(name, eps)] = AdvSet(x_adv[:n_tr], x_adv[n_tr:], norm(s_adv_tr), norm(s_adv_te), f_adv,
                                      (n_tr + n_te) / max(seconds, 1e-9), stage.key, sal_key,
                                      (adv_pred != y_te) & clean_correct, extra)
        if eps_free:
            selected, used = None, None
        else:
            selected = _select_eps(acfg.eps, by_eps, cfg.epsilon_selection.max_accuracy)
            used = selected if selected is not None else max(acfg.eps)
            if selected is None:
                log(f"attack {name}: no eps brings f below {cfg.epsilon_selection.max_accuracy}; Table 1 uses the largest, {used}")
        attacks_out[name] = {"type": acfg.type, "eps": selected, "eps_used": used, "adv_accuracy": adv[(name, used)].f_adv,
                             "by_eps": by_eps, **adv[(name, used)].extra}
        throughput[f"attack:{name}"] = float(np.mean([adv[(name, e)].images_per_second for e in grid]))
        timings[f"attack:{name}"] = time.perf_counter() - t0

    # ---- detectors ----------------------------------------------------------------------------
    selected_key = {n: (n, a["eps_used"]) for n, a in attacks_out.items()}
    primary = "image_saliency" if "image_saliency" in cfg.detectors else next(iter(cfg.detectors))
    detectors: dict[tuple[str, str, float | None], tuple[keras.Model, str, Callable]] = {}
    t_infer = [0.0, 0]
    roc_scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    saliency_cfg = dataclasses.asdict(cfg.saliency)

    def detector_for(det_name: str, key: tuple[str, float | None]) -> tuple[keras.Model, str, Callable]:
        ck = (det_name, *key)
        if ck not in detectors:
            dcfg = cfg.detectors[det_name]
            a = adv[key]
            stage = store.stage(f"detector:{det_name}:{_key_label(key)}", dataclasses.asdict(dcfg), a.key,
                                a.saliency_key, clean_sal_key, saliency_cfg, cfg.seed, *training.key)

            def build() -> keras.Model:
                x, y = balanced_set(
                    detector_input(dcfg.inputs, x_tr, s_tr), detector_input(dcfg.inputs, a.x_train, a.s_train),
                    seed=_seed_for(cfg.seed, "detector-data", *ck),
                )
                log(f"detector {det_name} on {_key_label(key)}: {len(x)} images")
                return train_detector(dcfg, x, y, strategy=training.strategy, loop=training.loop, log=log,
                                      seed=_seed_for(cfg.seed, "detector", *ck), verbose=2 if verbose else 0, f=f,
                                      key=f"detectors.{det_name}.batch_size")

            t0 = time.perf_counter()
            model = store.model(stage, build, lambda path: _load_model(path, strategy), collective=training.collective)
            timings[f"detector:{det_name}:{_key_label(key)}"] = time.perf_counter() - t0
            detectors[ck] = (model, stage.key, scorer(model))
        return detectors[ck]

    def evaluate(det_name: str, fit_key: tuple[str, float | None], test_key: tuple[str, float | None]) -> dict[str, float]:
        dcfg = cfg.detectors[det_name]
        _, d_key, score_fn = detector_for(det_name, fit_key)
        a = adv[test_key]
        stage = store.stage(f"eval:{det_name}:{_key_label(fit_key)}:on:{_key_label(test_key)}", d_key, a.key,
                            a.saliency_key, clean_sal_key, saliency_cfg, val_split, len(x_val))

        def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            t = time.perf_counter()
            sc = detector_scores(score_fn, detector_input(dcfg.inputs, x_te, s_te), strategy=strategy)
            sa = detector_scores(score_fn, detector_input(dcfg.inputs, a.x_test, a.s_test), strategy=strategy)
            sv = detector_scores(score_fn, detector_input(dcfg.inputs, x_val, s_val), strategy=strategy)
            metrics = {**detection_metrics(sc, sa), **operating_point_metrics(sv, sc, sa, a.fooled)}
            return ({"clean": sc, "adv": sa},
                    {"metrics": metrics, "seconds": time.perf_counter() - t, "images": len(sc) + len(sa) + len(sv)})

        arrays, values = store.arrays(stage, compute)
        t_infer[0] += values["seconds"]
        t_infer[1] += values["images"]
        if fit_key == test_key:
            roc_scores.setdefault(test_key[0], {})[det_name] = (arrays["clean"], arrays["adv"])
        return values["metrics"]

    results: dict[str, Any] = {
        "suite": cfg.name,
        "dataset": cfg.dataset.name,
        "seed": cfg.seed,
        "environment": {
            "advsal_bench": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            **describe(cluster),
            "train_loop": training.loop,
            "train_replicas": int(training.strategy.num_replicas_in_sync),
            "pairsearch_backend": pairsearch_backend,
        },
        "data": {"source": data.source, "train": int(len(data.x_train)), "test": int(len(data.x_test)),
                 "adversarial_train": int(n_tr), "adversarial_test": int(n_te), "num_classes": int(data.num_classes),
                 "validation": {"split": val_split, "size": int(len(x_val))}},
        "classifier": classifier,
        "saliency": {"method": cfg.saliency.method, "abs": cfg.saliency.abs, "normalize": cfg.saliency.normalize, "scale": scale},
        "attacks": attacks_out,
    }

    if "table1" in cfg.experiments:
        rows_t1 = []
        for attack, key in selected_key.items():
            for det_name in cfg.detectors:
                m = evaluate(det_name, key, key)
                rows_t1.append({"attack": attack, "eps": key[1], "detector": det_name, "f_clean": f_clean,
                                "f_adv": adv[key].f_adv, **m})
        results["table1"] = rows_t1

    if "eps_generalization" in cfg.experiments:
        results["eps_generalization"] = {}
        for name, acfg in cfg.attacks.items():
            if acfg.type in EPS_FREE_ATTACKS:
                continue
            grid = list(acfg.eps)
            matrix = [[evaluate(primary, (name, fit), (name, test))["d_accuracy"] for fit in grid] for test in grid]
            results["eps_generalization"][name] = {"detector": primary, "eps_fit": grid, "eps_test": grid, "accuracy": matrix}

    if "attack_generalization" in cfg.experiments:
        names = list(cfg.attacks)
        matrix = [[evaluate(primary, selected_key[fit], selected_key[test])["d_accuracy"] for fit in names] for test in names]
        results["attack_generalization"] = {"detector": primary, "attacks": names,
                                            "eps": [selected_key[n][1] for n in names], "accuracy": matrix}

    if cfg.adaptive.attacks:
        t0 = time.perf_counter()
        victim = Victim(f, f_key, model_fn, sal_fn, norm, scale)
        results["adaptive"] = _adaptive(cfg, victim, (x_te, y_te, test_logits[:n_te].argmax(-1)), strategy=strategy,
                                        store=store, attacks_out=attacks_out, selected_key=selected_key,
                                        table1=results["table1"], detector_for=detector_for, log=log)
        timings["adaptive"] = time.perf_counter() - t0

    throughput["detector_inference"] = t_infer[1] / t_infer[0] if t_infer[0] else float("nan")
    if not chief:
        # Worker 0 writes results.json, the report and the models; the others wait for it, so that no
        # worker leaves while another still needs it (a missing peer reads as a lost one).
        store.sync()
        return {**results, "worker": index}

    if "gradcam" in cfg.experiments:
        from .gradcam import gradcam_experiment

        results["gradcam"] = gradcam_experiment(f, x_te, {n: adv[k].x_test for n, k in selected_key.items()}, out,
                                                layers=cfg.gradcam.layers, images=cfg.gradcam.images)

    for (det_name, attack, eps), (model, _, _) in detectors.items():
        if (attack, eps) == selected_key.get(attack):
            save_keras(model, out / "models" / f"d_{det_name}_{attack}.keras")

    # Timing-derived numbers live under these two keys only, so runs compare equal apart from them.
    timings["total"] = time.perf_counter() - t_start
    results["images_per_second"] = throughput
    results["timings_seconds"] = timings

    from .report import write_report

    write_json(out / "stages.json", store.report)
    counts = {k: sum(1 for v in store.report.values() if v.split()[0] == k) for k in ("computed", "reused", "resumed")}
    log("stages: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    write_report(results, out, examples=_examples(x_te, s_te, adv, selected_key), stages=store.report,
                 roc={a: roc_scores[a] for a in selected_key if a in roc_scores})
    write_json(out / "results.json", results)
    store.sync()
    return results


# ---- stage helpers -------------------------------------------------------------------------------


def _load_model(path: Path | str, strategy: tf.distribute.Strategy) -> keras.Model:
    with strategy.scope():
        return keras.models.load_model(path, compile=False, safe_mode=True)


def _classifier(cfg: SuiteConfig, data: Dataset, data_key: str, strategy: tf.distribute.Strategy,
                training: TrainSetup, store: StageStore, verbose: int, log: Log) -> tuple[keras.Model, str]:
    """f, loaded from ``classifier.path`` or trained (and stored), with the key downstream stages hash."""
    c = cfg.classifier
    if c.path is not None:
        try:
            model = _load_model(c.path, strategy)
        except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe model file is an input error
            raise InputError(f"{c.path}: cannot load the classifier ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        expected = (*data.x_train.shape[1:],)
        if tuple(model.input_shape[1:]) != expected or model.output_shape[-1] != data.num_classes:
            raise InputError(
                f"{c.path}: expected a model from {expected} to {data.num_classes} logits, "
                f"got {tuple(model.input_shape[1:])} -> {model.output_shape[-1]}"
            )
        log(f"classifier: loaded {c.path}")
        return model, fingerprint("classifier-file", sha256_file(c.path))
    stage = store.stage("classifier", dataclasses.asdict(c), data_key, cfg.seed, *training.key)

    def build() -> keras.Model:
        log(f"classifier: training {c.arch} for {c.epochs} epochs ({training.loop} loop, "
            f"{training.strategy.num_replicas_in_sync} replica(s))")
        return train_model(
            lambda: build_model(c.arch, data.x_train.shape[1:], data.num_classes, weights=c.weights),
            data.x_train, data.y_train, task="classify", strategy=training.strategy, loop=training.loop,
            epochs=c.epochs, batch_size=c.batch_size, learning_rate=c.learning_rate,
            lr_decay_epochs=c.lr_decay_epochs, lr_decay_factor=c.lr_decay_factor,
            seed=_seed_for(cfg.seed, "classifier"), verbose=2 if verbose else 0, log=log, key="classifier.batch_size")

    model = store.model(stage, build, lambda path: _load_model(path, strategy), collective=training.collective)
    if store.report.get("classifier") == "reused":
        log("classifier: reused from the store")
    return model, stage.key


def _model_fn(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    def model_fn(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    return model_fn


def _saliency_fn(model_fn: Callable, use_abs: bool) -> Callable:
    def saliency(x: tf.Tensor) -> tf.Tensor:
        return gradient_saliency(model_fn, x, abs=use_abs)

    return saliency


def _saliency(strategy, sal_fn, x: np.ndarray, batch_size: int, verbose: int, log: Log, label: str) -> np.ndarray:
    progress = _Progress(len(x), verbose, label, log)
    s = run_batched(strategy, sal_fn, [x], batch_size=batch_size, progress=progress)[0]
    _check_finite(s, "saliency", batch_size)
    return s


def _attack_fn(model_fn: Callable, acfg: Any) -> Callable:
    if acfg.type == "fgsm":
        def step(x, eps):
            return fgsm(model_fn, x, eps=eps)
    elif acfg.type == "ifgsm_linf":
        def step(x, eps, alpha):
            return ifgsm_linf(model_fn, x, eps=eps, steps=acfg.steps, alpha=alpha)
    elif acfg.type == "ifgsm_l2":
        def step(x, eps, alpha):
            return ifgsm_l2(model_fn, x, eps=eps, steps=acfg.steps, alpha=alpha)
    elif acfg.type == "cw_l2":
        def step(x):
            return cw_l2(model_fn, x, kappa=acfg.kappa, c_init=acfg.c_init, binary_search_steps=acfg.binary_search_steps,
                         steps=acfg.steps, learning_rate=acfg.learning_rate)
    else:  # pragma: no cover - config validation rejects other types
        raise ValueError(f"attack type: expected fgsm, ifgsm_linf, ifgsm_l2 or cw_l2, got {acfg.type!r}")
    return step


def _attack_constants(acfg: Any, eps: float) -> tuple[float, ...]:
    if acfg.type == "fgsm":
        return (eps,)
    return (eps, acfg.alpha if acfg.alpha is not None else default_alpha(eps, acfg.steps))


def _attack_chunk(strategy, step, consts, rows, batch_size: int, progress: _Progress, label: str) -> Callable:
    def compute(start: int, stop: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        x, _ = rows(start, stop)
        t = time.perf_counter()
        out = run_batched(strategy, step, [x], batch_size=batch_size, constants=consts, progress=progress)[0]
        _check_finite(out, f"{label} (images {start}..{stop - 1})", batch_size)
        return {"x": out}, {"seconds": time.perf_counter() - t}

    return compute


def _adaptive(cfg: SuiteConfig, victim: Victim, test: tuple[np.ndarray, np.ndarray, np.ndarray], *,
              strategy: tf.distribute.Strategy, store: StageStore, attacks_out: dict[str, Any],
              selected_key: dict[str, tuple[str, float | None]], table1: list[dict[str, Any]],
              detector_for: Callable, log: Log) -> list[dict[str, Any]]:
    """Each adaptive attack against each Table 1 detector, next to the non-adaptive numbers.

    ``test``: the clean test images, their labels and f's predictions on them.
    """
    from .adaptive import adaptive_metrics, craft_cw_detector, craft_metzen, detector_fn_for, metzen_ball
    from .models.surrogate import softplus_surrogate

    x_te, y_te, clean_pred = test
    f, model_fn, sal_fn, norm, f_key = victim.model, victim.fn, victim.saliency_fn, victim.normalize, victim.key
    ad = cfg.adaptive
    n = min(ad.test_size, len(x_te))
    x, y, pred0 = x_te[:n], y_te[:n], clean_pred[:n]
    surrogate_fn = _model_fn(softplus_surrogate(f, beta=ad.surrogate_beta)) if ad.surrogate_beta else None
    # Detectors fit on jsma or cw_l2 have no eps of their own: attack them in the suite's first l_inf ball.
    linf = [a["eps_used"] for a in attacks_out.values() if a["type"] in ("fgsm", "ifgsm_linf")]
    fallback = ("linf", float(linf[0])) if linf else None
    t1 = {(r["attack"], r["detector"]): r for r in table1}
    rows: list[dict[str, Any]] = []
    for attack, key in selected_key.items():
        for det_name in ad.detectors or tuple(cfg.detectors):
            dcfg = cfg.detectors[det_name]
            d_model, d_key, score_fn = detector_for(det_name, key)
            dfn = detector_fn_for(d_model, dcfg, model_fn, cfg.saliency, victim.scale, surrogate_fn)
            ref = t1[(attack, det_name)]
            base = {"attack": attack, "eps": key[1], "detector": det_name,
                    "non_adaptive": {"f_adv": ref["f_adv"], "d_adv": ref["d_adv"], "d_adv_fooling": ref["d_adv_fooling"]}}

            def measure(x_adv: np.ndarray) -> dict[str, Any]:
                adv_pred = run_batched(strategy, model_fn, [x_adv], batch_size=256)[0].argmax(-1)
                s_adv = norm(_saliency(strategy, sal_fn, x_adv, 256, 0, log, ""))
                scores = detector_scores(score_fn, detector_input(dcfg.inputs, x_adv, s_adv), strategy=strategy)
                return adaptive_metrics(x, y, x_adv, pred0, adv_pred, scores)

            for kind in ad.attacks:
                if kind == "metzen":
                    ball = metzen_ball(ad, cfg.attacks[attack].type, key[1], fallback)
                    if ball is None:
                        log(f"adaptive metzen on {det_name}/{attack}: no eps ball defined (set adaptive.metzen.eps); skipped")
                        continue
                    stage = store.stage(f"adaptive:metzen:{det_name}:{_key_label(key)}", d_key, f_key,
                                        dataclasses.asdict(ad.metzen), ball, n, ad.surrogate_beta, ad.batch_size)

                    def compute(ball=ball) -> tuple[dict, dict]:
                        log(f"adaptive metzen on {det_name}/{_key_label(key)}: {ball[0]} eps={ball[1]:g}, "
                            f"sigma {list(ad.metzen.sigma)}, {n} images")
                        sets = craft_metzen(strategy, model_fn, dfn, x, norm=ball[0], eps=ball[1], sigmas=ad.metzen.sigma,
                                            steps=ad.metzen.steps, batch_size=ad.batch_size)
                        return {}, {"rows": [{"sigma": s, "norm": ball[0], "eps_adaptive": ball[1], **measure(xa)}
                                             for s, xa in sets.items()]}

                    _, values = store.arrays(stage, compute)
                    rows += [{**base, "adaptive_attack": "metzen", **r} for r in values["rows"]]
                else:
                    c = ad.cw_detector
                    stage = store.stage(f"adaptive:cw_detector:{det_name}:{_key_label(key)}", d_key, f_key,
                                        dataclasses.asdict(c), n, ad.surrogate_beta, ad.batch_size)

                    def compute() -> tuple[dict, dict]:
                        log(f"adaptive cw_detector on {det_name}/{_key_label(key)}: {c.steps} steps, {n} images")
                        xa = craft_cw_detector(strategy, model_fn, dfn, x, kappa=c.kappa, c=c.c, steps=c.steps,
                                               learning_rate=c.learning_rate, batch_size=ad.batch_size)
                        return {}, {"row": measure(xa)}

                    _, values = store.arrays(stage, compute)
                    rows.append({**base, "adaptive_attack": "cw_detector", **values["row"]})
    return rows


def _validation_split(data: Dataset, n_tr: int, n_te: int, size: int) -> tuple[str, np.ndarray]:
    """Clean images outside every adversarial subset: test images first, since they match test data."""
    if len(data.x_test) > n_te:
        return "test", data.x_test[n_te : n_te + size]
    return "train", data.x_train[n_tr : n_tr + size]


def _key_label(key: tuple[str, float | None]) -> str:
    """An adversarial set's name in stage names and logs: the attack, with its eps where it has one."""
    return key[0] if key[1] is None else f"{key[0]}:eps={key[1]:g}"


def _eps_key(eps: float) -> str:
    return f"{eps:g}"


def _select_eps(grid: tuple[float, ...], by_eps: dict[str, float], max_accuracy: float) -> float | None:
    """The smallest eps of the grid at which f's accuracy falls below ``max_accuracy``."""
    for eps in sorted(grid):
        if by_eps[_eps_key(eps)] < max_accuracy:
            return eps
    return None


def _jsma_chunk(cfg: SuiteConfig, name: str, acfg: JSMAConfig, model_fn, rows, num_classes: int,
                progress: _Progress) -> Callable:
    from .attacks.jsma import jsma

    def compute(start: int, stop: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        xs, ys = rows(start, stop)
        parts: dict[str, list] = {"x": [], "success": [], "changed": []}
        t_jac = t_pair = 0.0
        t = time.perf_counter()
        for b in range(0, len(xs), acfg.batch_size):
            res = jsma(model_fn, xs[b : b + acfg.batch_size], y=ys[b : b + acfg.batch_size], target=acfg.target,
                       theta=acfg.theta, gamma=acfg.gamma, increase=acfg.increase, backend=acfg.backend,
                       seed=_seed_for(cfg.seed, "jsma", name, start + b), num_classes=num_classes)
            parts["x"].append(res.x_adv)
            parts["success"].append(res.success)
            parts["changed"].append(res.changed_fraction)
            t_jac += res.seconds_jacobian
            t_pair += res.seconds_pairsearch
            progress(len(res.x_adv))
        x_adv = np.concatenate(parts["x"])
        _check_finite(x_adv, f"{name} (images {start}..{stop - 1})", acfg.batch_size)
        return ({"x": x_adv, "success": np.concatenate(parts["success"]), "changed": np.concatenate(parts["changed"])},
                {"seconds": time.perf_counter() - t, "seconds_jacobian": t_jac, "seconds_pairsearch": t_pair})

    return compute


def _examples(x_te, s_te, adv, selected_key, n: int = 4) -> dict[str, Any]:
    """A few test images per attack for the report's Figure-1-style grid."""
    return {
        "clean": (x_te[:n], s_te[:n]),
        "attacks": {name: (adv[key].x_test[:n], adv[key].s_test[:n]) for name, key in selected_key.items()},
    }
