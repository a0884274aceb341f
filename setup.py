"""Builds the aprlib._core C++ extension (pybind11, C++17, -O3, OpenMP if the compiler has it);
metadata is in pyproject.toml. APRLIB_OPENMP=0 builds without OpenMP (the kernels then run on one
thread); by default OpenMP is used when a test program compiles and links with it."""
import os
import subprocess
import sys
import tempfile

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup


def openmp_flags():
    """(compile args, link args) for OpenMP, or None if the compiler cannot build with it."""
    if os.environ.get("APRLIB_OPENMP", "1") == "0":
        return None
    candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"])] if sys.platform == "darwin" else [(["-fopenmp"], ["-fopenmp"])]
    cxx = os.environ.get("CXX", "c++")
    code = "#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "omp_test.cpp")
        with open(src, "w") as f:
            f.write(code)
        for comp, link in candidates:
            r = subprocess.run([cxx, *comp, src, "-o", os.path.join(d, "omp_test"), *link], capture_output=True)
            if r.returncode == 0:
                return comp, link
    print("aprlib: the C++ compiler cannot build with OpenMP; building without it (one thread)", file=sys.stderr)
    return None


omp = openmp_flags()
compile_args = ["-O3", "-fno-math-errno"] + (omp[0] if omp else [])
link_args = omp[1] if omp else []

ext = Pybind11Extension(
    "aprlib._core",
    sources=["aprlib/_cpp/apr_core.cpp", "aprlib/_cpp/apr_core3d.cpp", "aprlib/_cpp/apr_ops.cpp", "aprlib/_cpp/apr_tables.cpp", "aprlib/_cpp/bindings.cpp",
             "aprlib/_cpp/bindings_ops.cpp"],
    include_dirs=["aprlib/_cpp"],
    cxx_std=17,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
