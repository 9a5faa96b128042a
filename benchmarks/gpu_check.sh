#!/usr/bin/env bash
# The pair search on a GPU machine: build the native extension, run the pair-search tests on every
# backend present (gpu-marked ones included), check every backend against the brute force, time
# native vs cupy at n = 784, 12,288, 150,528 and batch 1, 64, 256, and write the figures as JSON.
#
# Needs Python with numpy, pytest, pybind11 and setuptools; cupy (cupy-cuda13x) for the GPU cases,
# which skip without it.  No TensorFlow: nothing here imports it.
#
# Usage: benchmarks/gpu_check.sh            (PYTHON=python3 and OUT=./runs/gpu_check by default)
#        PYTHON=/path/to/python OUT=/some/dir benchmarks/gpu_check.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-$PWD/runs/gpu_check}"  # runs/ is git-ignored
mkdir -p "$OUT"

echo "== python: $("$PYTHON" -c 'import sys; print(sys.version.split()[0], sys.executable)')"
echo "== build the native extension"
"$PYTHON" setup.py build_ext --inplace --force > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
"$PYTHON" - <<'EOF'
import advsal_bench.pairsearch as ps
for name, (ok, why) in ps.backend_status().items():
    print(f"   {name:9s} {'available' if ok else 'absent: ' + why}")
EOF

echo "== pair-search tests on every backend present (gpu-marked included)"
# The package's pytest options deselect slow tests only; -m here selects gpu and the rest.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pytest -q -p no:cacheprovider -m "gpu or not gpu" \
  --junitxml="$OUT/pytest.xml" tests/test_pairsearch.py tests/test_pairsearch_errors.py 2>&1 | tee "$OUT/pytest.log"
status=${PIPESTATUS[0]}

echo "== exactness against the brute force, then native vs cupy timings"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" benchmarks/gpu_check.py "$OUT" | tee "$OUT/gpu_check.log"
check=${PIPESTATUS[0]}

echo "== figures in $OUT/gpu_check.json (tests exit $status, checks exit $check)"
exit $(( status != 0 || check != 0 ))
