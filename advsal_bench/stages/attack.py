"""The attack stage: one attack at one eps on the pool, crafted in stored chunks."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..attacks import attack_spec
from .artifacts import AdvSet, Classifier, Pool
from .run import Run, check_finite


def crafter(run: Run, name: str, acfg: Any, f: Classifier):
    """The attack compiled once per (attack, f) for the whole run: every eps and chunk reuses it."""
    spec = attack_spec(acfg, f"attacks.{name}")
    return run.memo(("crafter", name, f.key), lambda: spec.crafter(acfg, f.fn, run.runner))


def attack(run: Run, f: Classifier, pool: Pool, name: str, acfg: Any, eps: float | None) -> AdvSet:
    """The pool's adversarial images under attack ``name`` at ``eps`` (None: an attack without a grid)."""
    spec = attack_spec(acfg, f"attacks.{name}")
    t0 = time.perf_counter()
    chunk = run.cfg.adversarial.chunk_size
    label = f"attack:{name}" + ("" if eps is None else f":eps={eps:g}")
    config = {"name": name, "params": spec.params(acfg), "eps": eps, "chunk": chunk, "seed": run.cfg.seed}
    stage = run.stage(label, "attack", [f, pool], config)
    craft = crafter(run, name, acfg, f)
    bar = run.progress(len(pool), label if eps is None else f"{name} eps={eps}")
    labels = pool.y if spec.uses_true_label else None

    def compute(start: int, stop: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        t = time.perf_counter()
        out = craft(pool.x[start:stop], None if labels is None else labels[start:stop], eps=eps,
                    seed_at=lambda i: run.seed_for(spec.name, name, start + i), progress=bar)
        check_finite(out.x_adv, f"{label} (images {start}..{stop - 1})", spec.batch_size(acfg))
        if out.x_adv.shape != pool.x[start:stop].shape:
            from ..errors import ConfigError

            raise ConfigError(f"config key 'attacks.{name}.type': {acfg.type} returned images of shape "
                              f"{out.x_adv.shape}, expected the shape of x, {pool.x[start:stop].shape}")
        return {"x": out.x_adv, **out.arrays}, {"seconds": time.perf_counter() - t, **out.values}

    arrays, values, status, reused = run.coord.chunked(stage, len(pool), chunk, compute)
    seconds = sum(v["seconds"] for v in values)
    totals = {k: float(sum(v[k] for v in values)) for k in (values[0] if values else {}) if k != "seconds"}
    run.record(stage, status, time.perf_counter() - t0, chunks_reused=reused,
               chunks=len(run.coord.store.chunk_names(len(pool), chunk)))
    run.timings.update({f"{label}:{k}": v for k, v in totals.items()})  # e.g. JSMA's Jacobian and pair search
    x = arrays.pop("x")
    pred = run.predict(f.fn, x[pool.n_train :], run.cfg.classifier.batch_size).argmax(-1)
    return AdvSet(stage.key, name, eps, x, arrays, totals, seconds, pool.n_train, pred)
