"""CLI: bad input exits 2 with one 'error:' line on stderr, and writes nothing.

A few cases go through ``python -m advsal_bench`` in real subprocesses (started together, since each
one pays the TensorFlow import); the rest call ``cli.main`` in-process.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from advsal_bench import cli

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "configs" / "quick.yaml"


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Run the CLI invocations concurrently; returns (tmp folder, name -> (exit code, stdout, stderr))."""
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "bad_attack.yaml").write_text("name: bad\nattacks: {deepfool: {eps: [0.1]}}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ADVSAL_DEBUG")}
    commands = {
        "validate_quick": ["validate", str(QUICK)],
        "run_bad_attack": ["run", str(tmp / "bad_attack.yaml"), "--output", str(tmp / "out_attack"), "--quiet"],
        # the custom training loop splits each batch evenly over 2 logical CPUs: 63 cannot be
        "run_odd_batch": ["run", str(QUICK), "--output", str(tmp / "out_batch"), "--quiet",
                          "--set", "distribute.strategy=mirrored", "--set", "distribute.cpu_devices=2",
                          "--set", "distribute.train_loop=custom", "--set", "detectors.image_saliency.batch_size=63"],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "advsal_bench", *args],
            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, args in commands.items()
    }
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[name] = (proc.returncode, out, err)
    return tmp, results


def test_subprocess_validate_quick_exits_0(cli_runs):
    _, results = cli_runs
    rc, out, err = results["validate_quick"]
    assert rc == 0, err
    assert "name: quick" in out and "mnist_net_f" in out  # the resolved config, defaults filled in
    assert err.strip().endswith("quick.yaml: valid")


def test_subprocess_run_bad_suite_writes_nothing(cli_runs):
    tmp, results = cli_runs
    rc, out, err = results["run_bad_attack"]
    assert rc == 2
    line = _one_error_line(err)
    assert "attacks.deepfool" in line and "fgsm" in line
    assert out == ""
    assert not (tmp / "out_attack").exists()
    assert not (tmp / "runs").exists()


# --- in-process -----------------------------------------------------------------------------------

BAD_SUITES = [
    ("unknown_key", "name: x\nclasifier: {epochs: 1}\n", [], r"'clasifier': unknown key; did you mean 'classifier'\?"),
    ("malformed", "name: x\nclassifier: {epochs: 3\n", [], r"malformed YAML at line \d+"),
    ("top_list", "- a\n", [], "top level, got list"),
    ("python_tag", 'name: x\nseed: !!python/object/apply:os.system ["echo hi"]\n', [], "python/object/apply"),
    ("npz_missing", "name: x\ndataset: {source: npz, path: /nonexistent/d.npz}\n", [], "'dataset.path'"),
    ("classifier_missing", "name: x\nclassifier: {path: /nonexistent/f.keras}\n", [], "'classifier.path'"),
    ("bad_arch", "name: x\nclassifier: {arch: resnet}\n", [], "unknown model 'resnet'"),
    ("set_syntax", "name: x\n", ["classifier.epochs"], "expected KEY.PATH=VALUE"),
    ("set_scalar", "name: x\nseed: 1\n", ["seed.x=1"], "key 'seed' is a int, not a mapping"),
    ("set_range", "name: x\n", ["epsilon_selection.max_accuracy=2"], "'epsilon_selection.max_accuracy'"),
]


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("text, overrides, message", [pytest.param(*c[1:], id=c[0]) for c in BAD_SUITES])
def test_main_bad_suite_returns_2(tmp_path, monkeypatch, capsys, command, text, overrides, message):
    import re

    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(text)
    argv = [command, str(suite)]
    for item in overrides:
        argv += ["--set", item]
    if command == "run":
        argv += ["--output", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert re.search(message, line), line
    assert str(suite) in line or "config key '" in line or "--set " in line  # names the file or the key
    assert captured.out == ""
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.yaml"]  # nothing else written (no runs/)


def test_main_run_default_output_not_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("name: named\nseed: -1\n")
    assert cli.main(["run", "s.yaml"]) == 2
    assert "'seed'" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_main_missing_suite_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: suite file not found" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["run", "nope.yaml", "--output", "out"]) == 2
    assert _one_error_line(capsys.readouterr().err) == "error: nope.yaml: suite file not found"
    assert list(tmp_path.iterdir()) == []  # neither out/ nor runs/


def test_main_validate_prints_resolved_config(capsys):
    assert cli.main(["validate", str(QUICK), "--set", "classifier.epochs=2", "--set", "attacks.fgsm.eps=[0.2]"]) == 0
    captured = capsys.readouterr()
    import yaml

    resolved = yaml.safe_load(captured.out)
    assert resolved["classifier"]["epochs"] == 2
    assert resolved["attacks"]["fgsm"]["eps"] == [0.2]
    assert resolved["detectors"]["image_only"]["arch"] == "mnist_net_d"
    assert captured.err.strip().endswith("valid")


def test_argparse_usage_errors_exit_2(capsys):
    for argv in ([], ["frobnicate", "x.yaml"], ["run"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--help"])
    assert info.value.code == 0
    assert "--output" in capsys.readouterr().out


def test_subprocess_batch_not_split_over_replicas_exits_2_before_any_work(cli_runs):
    tmp, results = cli_runs
    rc, out, err = results["run_odd_batch"]
    assert rc == 2, err
    line = _one_error_line(err)
    assert "'detectors.image_saliency.batch_size': expected a multiple of the 2 replicas in sync, got 63" in line
    assert not (tmp / "out_batch").exists()  # failed before the output folder was made
