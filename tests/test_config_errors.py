"""Every bad suite is a one-line ConfigError that names the key and what was expected."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from advsal_bench.config import load_config
from advsal_bench.errors import ConfigError, InputError

MISSING = "/nonexistent/advsal_bench_test/missing"

# (id, YAML text, --set overrides, regex the message must match)
CASES = [
    ("malformed_yaml", "name: x\nclassifier: {epochs: 3\nseed: 1\n", [], r"malformed YAML at line \d+, column \d+"),
    ("bad_indent", "name: x\nclassifier:\n  epochs: 3\n bad: 1\n", [], r"malformed YAML at line 4"),
    ("tab_indent", "name: x\nclassifier:\n\tepochs: 3\n", [], r"malformed YAML at line 3"),
    ("top_level_list", "- name\n- x\n", [], r"expected a mapping of suite keys at the top level, got list"),
    ("top_level_scalar", "just a string\n", [], r"top level, got str"),
    ("unknown_top_key", "name: x\nclasifier: {epochs: 1}\n", [], r"config key 'clasifier': unknown key; did you mean 'classifier'\?"),
    ("unknown_nested_key", "name: x\nclassifier: {epoch: 1}\n", [], r"'classifier.epoch': unknown key; did you mean 'epochs'\?"),
    ("unknown_key_no_hint", "name: x\nzzz: 1\n", [], r"'zzz': unknown key \(expected one of: name, seed, dataset"),
    ("unknown_attack_key", "name: x\nattacks: {fgsm: {epsilon: [0.1]}}\n", [], r"'attacks.fgsm.epsilon': unknown key; did you mean 'eps'\?"),
    ("wrong_type_int", "name: x\nclassifier: {epochs: three}\n", [], r"'classifier.epochs': expected an integer, got 'three'"),
    ("wrong_type_float_for_int", "name: x\nclassifier: {epochs: 2.5}\n", [], r"'classifier.epochs': expected an integer, got 2.5"),
    ("wrong_type_bool", "name: x\nsaliency: {abs: 1}\n", [], r"'saliency.abs': expected a boolean, got 1"),
    ("bool_is_not_int", "name: x\nseed: true\n", [], r"'seed': expected an integer, got True"),
    ("wrong_type_list_item", "name: x\nattacks: {fgsm: {eps: [0.1, big]}}\n", [], r"'attacks.fgsm.eps\[1\]': expected a number, got 'big'"),
    ("section_not_mapping", "name: x\nclassifier: 3\n", [], r"'classifier': expected a mapping, got 3"),
    ("nan_learning_rate", "name: x\nclassifier: {learning_rate: .nan}\n", [], r"'classifier.learning_rate': expected a finite number"),
    ("negative_lr", "name: x\nclassifier: {learning_rate: -1e-3}\n", [], r"'classifier.learning_rate': expected a value > 0, got -0.001"),
    ("zero_lr", "name: x\ndetectors: {d: {learning_rate: 0}}\n", [], r"'detectors.d.learning_rate': expected a value > 0"),
    ("negative_epochs", "name: x\nclassifier: {epochs: -1}\n", [], r"'classifier.epochs': expected a value >= 0, got -1"),
    ("negative_eps", "name: x\nattacks: {fgsm: {eps: [0.1, -0.2]}}\n", [], r"'attacks.fgsm.eps\[1\]': expected a value >= 0"),
    ("gamma_above_1", "name: x\nattacks: {jsma: {gamma: 1.5}}\n", [], r"'attacks.jsma.gamma': expected a value <= 1, got 1.5"),
    ("max_accuracy_above_1", "name: x\nepsilon_selection: {max_accuracy: 1.2}\n", [], r"'epsilon_selection.max_accuracy': expected a value <= 1"),
    ("zero_steps", "name: x\nattacks: {ifgsm_linf: {steps: 0}}\n", [], r"'attacks.ifgsm_linf.steps': expected a value > 0"),
    ("gradcam_images", "name: x\ngradcam: {images: 33}\n", [], r"'gradcam.images': expected a value <= 32"),
    ("unknown_dataset", "name: x\ndataset: {name: svhn}\n", [], r"'dataset.name': expected one of mnist, cifar10, imagenet10, got 'svhn'"),
    ("unknown_source", "name: x\ndataset: {source: hdf5}\n", [], r"'dataset.source': expected one of sample, keras, npz, idx, cifar_batches, image_folder, got 'hdf5'"),
    ("sample_not_mnist", "name: x\ndataset: {name: cifar10}\n", [], r"'dataset.source': 'sample' is available for mnist only"),
    ("unknown_attack", "name: x\nattacks: {deepfool: {eps: [0.1]}}\n", [], r"'attacks.deepfool': unknown attack 'deepfool'; expected one of apgd, cw_l2, fgsm, ifgsm_l2, ifgsm_linf, jsma, pgd or package.module:name"),
    ("unknown_attack_type", "name: x\nattacks: {mine: {type: cw}}\n", [], r"'attacks.mine.type': unknown attack 'cw'; expected one of apgd, cw_l2, fgsm, ifgsm_l2, ifgsm_linf, jsma, pgd"),
    ("attack_body_not_mapping", "name: x\nattacks: {fgsm: [0.1]}\n", [], r"'attacks.fgsm': expected a mapping of settings"),
    ("empty_attacks", "name: x\nattacks: {}\n", [], r"'attacks': expected a non-empty mapping"),
    ("empty_detectors", "name: x\ndetectors: []\n", [], r"'detectors': expected a non-empty mapping"),
    ("jsma_bad_target", "name: x\nattacks: {jsma: {target: sideways}}\n", [], r"'attacks.jsma.target': expected 'random', 'next' or a class index"),
    ("jsma_negative_target", "name: x\nattacks: {jsma: {target: -1}}\n", [], r"'attacks.jsma.target': expected a class index >= 0"),
    ("unknown_classifier_arch", "name: x\nclassifier: {arch: resnet50}\n", [], r"'classifier.arch': unknown model 'resnet50'; expected one of .*mnist_net_d.*mnist_net_f.*vgg16_f"),
    ("unknown_detector_arch", "name: x\ndetectors: {d: {arch: mlp}}\n", [], r"'detectors.d.arch': unknown model 'mlp'; expected one of .*mnist_net_d"),
    ("unknown_detector_input", "name: x\ndetectors: {d: {inputs: [image, gradcam]}}\n", [], r"'detectors.d.inputs\[1\]': expected one of image, saliency, got 'gradcam'"),
    ("repeated_detector_input", "name: x\ndetectors: {d: {inputs: [image, image]}}\n", [], r"'detectors.d.inputs': expected no repeated entries"),
    ("empty_detector_inputs", "name: x\ndetectors: {d: {inputs: []}}\n", [], r"'detectors.d.inputs': expected a non-empty list"),
    ("empty_eps", "name: x\nattacks: {fgsm: {eps: []}}\n", [], r"'attacks.fgsm.eps': expected a non-empty list, got \[\]"),
    ("repeated_experiments", "name: x\nexperiments: [table1, table1]\n", [], r"'experiments': expected no repeated entries, got \['table1', 'table1'\]"),
    ("unknown_experiment", "name: x\nexperiments: [table2]\n", [], r"'experiments\[0\]': expected one of table1, eps_generalization"),
    ("eps_generalization_without_eps", "name: x\nattacks: {jsma: {}}\nexperiments: [eps_generalization]\n", [], r"'experiments': eps_generalization needs at least one attack"),
    ("missing_name", "seed: 1\n", [], r"config key 'name': required, expected a string"),
    ("bad_name", "name: my suite\n", [], r"'name': expected letters, digits"),
    ("npz_without_path", "name: x\ndataset: {source: npz}\n", [], r"'dataset.path': required for source 'npz'"),
    ("idx_without_path", "name: x\ndataset: {source: idx}\n", [], r"'dataset.path': required for source 'idx'"),
    ("npz_path_missing", f"name: x\ndataset: {{source: npz, path: {MISSING}.npz}}\n", [], r"'dataset.path': expected an existing .npz file, got '/nonexistent"),
    ("idx_folder_missing", f"name: x\ndataset: {{source: idx, path: {MISSING}}}\n", [], r"'dataset.path': expected an existing folder for source 'idx'"),
    ("classifier_path_missing", f"name: x\nclassifier: {{path: {MISSING}.keras}}\n", [], r"'classifier.path': expected an existing .keras file, got '/nonexistent"),
    ("bad_strategy", "name: x\ndistribute: {strategy: tpu}\n", [], r"'distribute.strategy': expected one of auto, one_device, mirrored, multi_worker"),
    ("zero_devices", "name: x\ndistribute: {devices: 0}\n", [], r"'distribute.devices': expected a count > 0"),
    ("zero_cpu_devices", "name: x\ndistribute: {cpu_devices: 0}\n", [], r"'distribute.cpu_devices': expected a value > 0"),
    ("set_no_equals", "name: x\n", ["classifier.epochs"], r"--set 'classifier.epochs': expected KEY.PATH=VALUE"),
    ("set_empty_key", "name: x\n", ["=3"], r"--set '=3': expected KEY.PATH=VALUE"),
    ("set_empty_part", "name: x\n", ["classifier..epochs=3"], r"expected KEY.PATH=VALUE"),
    ("set_into_scalar", "name: x\nseed: 1\n", ["seed.value=2"], r"--set 'seed.value=2': key 'seed' is a int, not a mapping"),
    ("set_into_list", "name: x\n", ["experiments=[table1]", "experiments.first=table1"], r"key 'experiments' is a list, not a mapping"),
    ("set_unknown_key", "name: x\n", ["classifier.epoch=3"], r"'classifier.epoch': unknown key; did you mean 'epochs'\?"),
    ("set_wrong_type", "name: x\n", ["classifier.epochs=many"], r"'classifier.epochs': expected an integer, got 'many'"),
    ("set_malformed_value", "name: x\n", ["attacks.fgsm.eps=[0.1,"], r"--set attacks.fgsm.eps: malformed YAML"),
    ("set_python_tag", "name: x\n", ["seed=!!python/object/apply:os.getpid []"], r"malformed YAML.*python/object"),
]


@pytest.mark.parametrize("text, overrides, message", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_suite_raises_one_line_config_error(tmp_path, text, overrides, message):
    path = tmp_path / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, overrides)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)


def test_missing_suite_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: suite file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"suite file not found"):
        load_config(tmp_path)  # a folder is not a suite file


def test_non_utf8_suite_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"cannot read suite file \(UnicodeDecodeError"):
        load_config(path)


def test_oversized_suite_file(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: x\n" + "# padding\n" * 120_000)
    with pytest.raises(ConfigError, match=r"larger than 1 MiB"):
        load_config(path)


def test_python_tag_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.yaml"
    path.write_text(f'name: x\nseed: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match=r"evil.yaml: malformed YAML at line 2.*python/object/apply:os.system"):
        load_config(path)
    assert not marker.exists()
    path.write_text('!!python/object/apply:os.system ["echo hi"]\n')
    with pytest.raises(ConfigError, match=r"could not determine a constructor"):
        load_config(path)


def _billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "name: x\n" + "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_billion_laughs(9))  # 10**9 strings once expanded
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml: YAML expands to more than 100000 nodes"):
        load_config(path)
    assert time.perf_counter() - start < 2.0


def test_alias_bomb_in_set_value_is_refused(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("name: x\n")
    bomb = "{" + ", ".join(_billion_laughs(8).splitlines()[1:]) + "}"
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"--set gradcam: YAML expands to more than 100000 nodes"):
        load_config(path, [f"gradcam={bomb}"])
    assert time.perf_counter() - start < 2.0


def test_small_aliases_are_fine(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("name: x\nattacks:\n  a: {type: fgsm, eps: &grid [0.1, 0.2]}\n  b: {type: ifgsm_linf, eps: *grid}\n")
    cfg = load_config(path)
    assert cfg.attacks["a"].eps == cfg.attacks["b"].eps == (0.1, 0.2)


def test_error_names_only_first_problem_and_file(tmp_path):
    path = tmp_path / "two_errors.yaml"
    path.write_text("name: x\nclassifier: {epochs: -1}\ndetectors: {d: {epochs: -2}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "classifier.epochs" in str(info.value) and "detectors" not in str(info.value)


def test_train_loop_fit_across_workers_is_refused():
    from advsal_bench.training import resolve_loop

    with pytest.raises(ConfigError, match=r"distribute.train_loop.*expected auto or custom, got fit"):
        resolve_loop("fit", 2)
    assert resolve_loop("auto", 2) == "custom" and resolve_loop("auto", 1) == "fit"


def test_custom_loop_batch_not_a_multiple_of_the_replicas():
    import numpy as np

    from advsal_bench.training import custom_fit

    class TwoReplicas:
        num_replicas_in_sync = 2

    with pytest.raises(ConfigError, match=r"'classifier.batch_size': expected a multiple of the 2 replicas in sync, got 63"):
        custom_fit(None, None, np.zeros((4, 2)), np.zeros(4), task="classify", strategy=TwoReplicas(), epochs=1,
                   batch_size=63, schedule=lambda e: 1e-3, seed=0, key="classifier.batch_size")


@pytest.mark.parametrize("detector, message", [
    ({"inputs": ["saliency"], "image_filter": "highpass"}, "'image' is not among its inputs; expected none, got 'highpass'"),
    ({"arch": "metzen_d", "inputs": ["image"], "image_filter": "highpass"}, "metzen_d feeds the image to f"),
    ({"image_filter": "sobel"}, "image_filter"),
])
def test_detector_image_filter_errors(tmp_path, detector, message):
    import yaml

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "dataset": {"source": "sample"}, "detectors": {"d": detector}}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)
