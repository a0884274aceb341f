"""Builds the aprlib._core C++ extension (pybind11, C++17, -O3, OpenMP); metadata is in pyproject.toml."""
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

compile_args = ["-O3", "-fopenmp", "-fno-math-errno"]
link_args = ["-fopenmp"]
if sys.platform == "darwin":  # Apple clang: OpenMP via libomp, if installed
    compile_args = ["-O3", "-Xpreprocessor", "-fopenmp"]
    link_args = ["-lomp"]

ext = Pybind11Extension(
    "aprlib._core",
    sources=["aprlib/_cpp/apr_core.cpp", "aprlib/_cpp/apr_ops.cpp", "aprlib/_cpp/apr_tables.cpp", "aprlib/_cpp/bindings.cpp",
             "aprlib/_cpp/bindings_ops.cpp"],
    include_dirs=["aprlib/_cpp"],
    cxx_std=17,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
