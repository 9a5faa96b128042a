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
