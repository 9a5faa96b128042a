"""Installation-level behaviour: what importing the package does and does not do, and the CLI's TF import."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=env, cwd=ROOT)


def test_import_changes_no_environment_variable_and_no_file_descriptor():
    code = """
import os, sys
before_env = dict(os.environ)
before_fds = sorted(os.listdir('/proc/self/fd'))
import advsal_bench
after_fds = sorted(os.listdir('/proc/self/fd'))
assert dict(os.environ) == before_env, set(os.environ.items()) ^ set(before_env.items())
assert after_fds == before_fds, (before_fds, after_fds)
assert 'tensorflow' not in sys.modules
print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))
"""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = _python(code, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None"


def test_pairsearch_imports_and_searches_without_tensorflow():
    # sys.modules[...] = None makes `import tensorflow` fail as if it were not installed.
    code = """
import sys; sys.modules['tensorflow'] = None
import numpy as np
import advsal_bench.pairsearch as ps
s_t = np.array([[1.0, 2.0, -0.5]]); s_o = np.array([[-3.0, -1.0, 2.0]])
p, q, v = ps.best_pairs(s_t, s_o, np.ones((1, 3), bool), backend='numpy')
print(int(p[0]), int(q[0]))
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    # alpha = s_t[p] + s_t[q] > 0, beta = s_o[p] + s_o[q] < 0: only (0, 1) qualifies (alpha 3, beta -4).
    assert proc.stdout.split() == ["0", "1"]


def test_cli_without_tensorflow_names_the_extra():
    code = "import sys; sys.modules['tensorflow'] = None\nfrom advsal_bench.cli import main\nsys.exit(main(['validate', 'configs/quick.yaml']))"
    proc = _python(code)
    assert proc.returncode == 1
    assert "pip install 'advsal_bench[cpu]'" in proc.stderr and "[gpu]" in proc.stderr


def test_public_api_names_resolve_on_first_use():
    import advsal_bench

    assert callable(advsal_bench.load_config) and callable(advsal_bench.run_suite)
    assert "numpy" in advsal_bench.available_backends()
    try:
        advsal_bench.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown attribute must raise AttributeError")


_FAKE_TF = '''import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1795600927.9 11020 port.cc:153] oneDNN custom operations are on. You may see slightly\\n")
os.write(2, b"a real problem while importing\\n")
'''


def _cli_tf_import_with_fake_tf(tmp_path, level: str) -> list[str]:
    """The CLI's TF import in a subprocess whose `tensorflow` writes TF 2.21's start-up notices to fd 2."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(_FAKE_TF)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "TF_CPP_MIN_LOG_LEVEL": level}
    code = "import sys\nfrom advsal_bench._tf_quiet import import_tensorflow\nimport_tensorflow()\nprint('imported', file=sys.stderr)"
    proc = _python(code, env)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.splitlines()


def test_cli_drops_tensorflow_startup_notices_and_keeps_everything_else(tmp_path):
    # On AVX-512 CPUs TF 2.21 prints the oneDNN notice at import whatever TF_CPP_MIN_LOG_LEVEL says,
    # which would turn every one-line error of the CLI into five lines.
    assert _cli_tf_import_with_fake_tf(tmp_path, "3") == ["a real problem while importing", "imported"]


def test_cli_keeps_tensorflow_startup_notices_when_info_logs_are_asked_for(tmp_path):
    lines = _cli_tf_import_with_fake_tf(tmp_path, "0")
    assert len(lines) == 4 and "oneDNN custom operations are on" in lines[1]



_NOTICE = ("E0000 00:00:1796276123.3 32284 node_def_util.cc:682] NodeDef mentions attribute "
           "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; ...>")

_FIT_WITH_DETERMINISM = """import os, sys
{setup}
import numpy as np, keras, tensorflow as tf
from advsal_bench._tf_quiet import fit_notices_dropped
from advsal_bench.training import train_model
keras.utils.set_random_seed(0)
tf.config.experimental.enable_op_determinism()
x = np.random.default_rng(0).random((64, 4, 4, 1), dtype=np.float32)
y = np.arange(64) % 2
build = lambda: keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
train_model(build, x, y, task="classify", strategy=tf.distribute.get_strategy(), epochs=1, batch_size=16,
            learning_rate=1e-3, seed=0, verbose=0)
with fit_notices_dropped():
    os.write(2, {notice!r}.encode() + b"\\n")
    os.write(2, b"a real problem in a fit\\n")
print("fitted", file=sys.stderr)
"""


def _fit_stderr(setup: str) -> list[str]:
    """stderr of a subprocess that trains a tiny model with op determinism on (as every run does),
    then writes TF's notice and another line to fd 2 where a fit would."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = _python(_FIT_WITH_DETERMINISM.format(setup=setup, notice=_NOTICE), env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-2:] == ["a real problem in a fit", "fitted"], proc.stderr
    return lines


def test_cli_drops_the_tf_data_determinism_notice_of_keras_fits():
    # TF 2.21 logs it as an ERROR-level line in every Keras fit on arrays once op determinism is on.
    lines = _fit_stderr("from advsal_bench._tf_quiet import import_tensorflow\nimport_tensorflow()")
    assert not any("use_unbounded_threadpool" in line for line in lines), lines


def test_library_users_keep_tensorflow_fit_logs_as_tensorflow_writes_them():
    lines = _fit_stderr("")
    assert _NOTICE in lines, lines
