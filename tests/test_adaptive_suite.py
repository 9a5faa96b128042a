"""C&W, Metzen's detector and the adaptive attacks wired through the YAML, on a tiny suite."""
from __future__ import annotations

import json
import math

import pytest

from advsal_bench.config import config_from_dict
from advsal_bench.suite import run_suite

SUITE = {
    "name": "tiny_adaptive",
    "seed": 1,
    "dataset": {"name": "mnist", "source": "sample", "train_size": 800, "test_size": 200},
    "classifier": {"epochs": 2, "batch_size": 64, "learning_rate": 2e-3},
    "attacks": {
        "fgsm": {"eps": [0.3]},
        "cw_l2": {"steps": 20, "binary_search_steps": 2},
    },
    "detectors": {
        "image_saliency": {"inputs": ["image", "saliency"], "epochs": 2, "batch_size": 32, "learning_rate": 1e-3},
        "metzen": {"arch": "metzen_d", "inputs": ["image"], "epochs": 2, "batch_size": 32, "learning_rate": 1e-3},
    },
    "adversarial": {"train_size": 200, "test_size": 100, "validation_size": 50},
    "adaptive": {"attacks": ["metzen", "cw_detector", "orthogonal_pgd", "selective_pgd"], "test_size": 24,
                 "batch_size": 24, "metzen": {"sigma": [0.0, 1.0], "steps": 5}, "cw_detector": {"steps": 10},
                 "orthogonal_pgd": {"steps": 10}, "selective_pgd": {"steps": 10}},
    "experiments": ["table1"],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("adaptive")
    return out, run_suite(config_from_dict(SUITE), out, verbose=0)


def test_cw_l2_is_a_table1_row(run):
    _, r = run
    cw = r["attacks"]["cw_l2"]
    assert cw["eps"] is None and cw["adv_accuracy"] < r["classifier"]["test_accuracy"]
    assert 0.0 < cw["success_rate"] <= 1.0 and cw["mean_l2"] > 0
    assert {(row["attack"], row["detector"]) for row in r["table1"]} == {
        (a, d) for a in SUITE["attacks"] for d in SUITE["detectors"]}


def test_adaptive_rows_for_each_attack_and_detector(run):
    _, r = run
    rows = r["adaptive"]
    for attack in SUITE["attacks"]:
        for det in SUITE["detectors"]:
            mine = [x for x in rows if x["attack"] == attack and x["detector"] == det]
            assert {x["sigma"] for x in mine if x["adaptive_attack"] == "metzen"} == {0.0, 1.0}
            for kind in ("cw_detector", "orthogonal_pgd", "selective_pgd"):
                assert sum(x["adaptive_attack"] == kind for x in mine) == 1
    for x in rows:
        assert x["images"] == 24
        for k in ("success_rate", "f_accuracy", "detection_rate", "fooling_rate"):
            assert 0.0 <= x[k] <= 1.0, (k, x)
        assert x["success_rate"] <= x["fooling_rate"]
        assert math.isnan(x["detection_rate_fooling"]) or 0.0 <= x["detection_rate_fooling"] <= 1.0
        assert x["mean_l2"] >= 0 and "d_adv" in x["non_adaptive"]
        if x["adaptive_attack"] != "cw_detector":
            # fgsm's ball for the D fit on fgsm; the fallback l_inf ball (fgsm's eps) for cw_l2's D
            assert x["norm"] == "linf" and x["eps_adaptive"] == pytest.approx(0.3)
            assert x["mean_linf"] <= 0.3 + 1e-5
        # the deployed threshold flags at most 5% of the 50 clean validation images
        assert x["threshold_rule"] == "5% FPR on clean validation"
        assert 0.0 <= x["success_rate_default"] <= 1.0 and 0.0 <= x["detection_rate_default"] <= 1.0


def test_the_deployed_threshold_flags_5_percent_of_clean_validation_images(run):
    import keras
    import numpy as np

    from advsal_bench import stages
    from advsal_bench.detectors import DETECTORS
    from advsal_bench.detectors.spec import DetectorContext

    out, r = run
    cfg = config_from_dict(SUITE)
    val = stages.splits(cfg, stages.load_data(cfg)).val
    f = keras.models.load_model(out / "models" / "f.keras", compile=False, safe_mode=True)
    folder = next((out / "store").glob("detector_metzen_fgsm_eps=0.3-*"))
    det = DETECTORS.get("learned").build(cfg.detectors["metzen"], DetectorContext()).restore(folder, model=f)
    threshold = next(x["threshold"] for x in r["adaptive"] if (x["detector"], x["attack"]) == ("metzen", "fgsm"))
    assert np.mean(det.score(val.x) >= threshold) <= 0.05


def test_report_and_json(run):
    out, r = run
    on_disk = json.loads((out / "results.json").read_text())
    assert len(on_disk["adaptive"]) == len(r["adaptive"])
    report = (out / "report.md").read_text()
    assert "## Adaptive attacks on f + D" in report and "metzen sigma=1" in report
    assert "orthogonal_pgd (linf 0.3)" in report and "selective_pgd (linf 0.3)" in report
    assert (out / "figures" / "roc_cw_l2.png").is_file()
