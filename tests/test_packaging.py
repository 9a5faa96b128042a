"""Installation-level behaviour: the import-time TensorFlow check and the package layout."""
from __future__ import annotations

import subprocess
import sys


def test_import_without_tensorflow_names_the_extra():
    # sys.modules[...] = None makes `import tensorflow` fail as if it were not installed.
    code = "import sys; sys.modules['tensorflow'] = None\nimport advsal_bench"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "pip install 'advsal_bench[cpu]'" in proc.stderr and "[gpu]" in proc.stderr


def test_public_api_is_lazy_and_complete():
    import advsal_bench

    assert callable(advsal_bench.load_config) and callable(advsal_bench.run_suite)
    assert "numpy" in advsal_bench.available_backends()


_FAKE_TF = '''import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1795600927.9 11020 port.cc:153] oneDNN custom operations are on. You may see slightly\\n")
os.write(2, b"a real problem while importing\\n")
'''


def _import_with_fake_tf(tmp_path, level: str) -> list[str]:
    """Imports advsal_bench in a subprocess whose `tensorflow` writes TF 2.21's startup notices to fd 2."""
    import os
    from pathlib import Path

    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(_FAKE_TF)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}", "TF_CPP_MIN_LOG_LEVEL": level}
    code = "import sys, advsal_bench; print('imported', file=sys.stderr)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.splitlines()


def test_tensorflow_startup_notices_are_dropped_and_everything_else_kept(tmp_path):
    # On AVX-512 CPUs TF 2.21 prints the oneDNN notice at import whatever TF_CPP_MIN_LOG_LEVEL says,
    # which would turn every one-line error of the CLI into five lines.
    assert _import_with_fake_tf(tmp_path, "3") == ["a real problem while importing", "imported"]


def test_tensorflow_startup_notices_stay_when_info_logs_are_asked_for(tmp_path):
    lines = _import_with_fake_tf(tmp_path, "0")
    assert len(lines) == 4 and "oneDNN custom operations are on" in lines[1]
