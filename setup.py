"""Builds the optional native JSMA pair search (pybind11 + OpenMP).

A failed native build must never fail the install: advsal_bench falls back to
the vectorized NumPy pair search at import time (see advsal_bench.pairsearch).
"""
import sys
import warnings

from setuptools import setup

try:
    from pybind11.setup_helpers import Pybind11Extension, build_ext
except ImportError:  # pybind11 missing: install the pure-Python package only
    Pybind11Extension = None
    build_ext = None


def _extensions():
    if Pybind11Extension is None:
        return []
    # No FP exception flags are read, and without them GCC can if-convert and
    # vectorize the masked sigma/delta loops; results stay IEEE-identical.
    compile_args = ["-O3", "-fno-trapping-math"]
    link_args = []
    if sys.platform.startswith("linux"):
        compile_args += ["-fopenmp"]
        link_args += ["-fopenmp"]
    return [
        Pybind11Extension(
            "advsal_bench._jsma_native",
            ["csrc/jsma_pairs.cpp"],
            include_dirs=["advsal_bench/pairsearch"],  # the one header shared with the CUDA kernels
            depends=["advsal_bench/pairsearch/jsma_pairs_core.h"],
            cxx_std=17,
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
    ]


cmdclass = {}
if build_ext is not None:

    class OptionalBuildExt(build_ext):
        """build_ext that degrades to a warning: the NumPy backend still works."""

        def run(self):
            try:
                super().run()
            except Exception as exc:  # noqa: BLE001 - any compiler failure
                warnings.warn(f"advsal_bench: native pair search not built ({exc}); using the NumPy fallback")

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:  # noqa: BLE001
                warnings.warn(f"advsal_bench: could not build {ext.name} ({exc}); using the NumPy fallback")

    cmdclass["build_ext"] = OptionalBuildExt

setup(ext_modules=_extensions(), cmdclass=cmdclass)
