"""Build script: compiles csrc/*.cpp into the optional extension ``eoflow_fast._C``.

The C++ ops register themselves with ``TORCH_LIBRARY_FRAGMENT(eoflow_fast_cpp, m)``;
importing ``eoflow_fast._C`` loads them into ``torch.ops.eoflow_fast_cpp``.
``kernels/`` (Triton, torch + triton only) is installed as ``eoflow_fast.kernels``.

Install with the already-installed torch:  pip install -e . --no-build-isolation
Set EOFLOW_FAST_NO_EXT=1 to skip the extension (everything then runs on the reference).
"""
import glob
import os
import sys
import warnings

from setuptools import find_packages, setup

packages = find_packages(include=["eoflow_fast", "eoflow_fast.*"]) + ["eoflow_fast.kernels"]
package_dir = {"eoflow_fast.kernels": "kernels"}
ext_modules, cmdclass = [], {}

if os.environ.get("EOFLOW_FAST_NO_EXT") != "1":
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension

        cxx = ["-O3", "-std=c++17", "-fopenmp"]
        if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
            cxx += ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
        ext_modules = [
            CppExtension(
                "eoflow_fast._C",
                sorted(glob.glob("csrc/*.cpp")),
                extra_compile_args={"cxx": cxx},
                extra_link_args=["-fopenmp"],
            )
        ]
        cmdclass = {"build_ext": BuildExtension.with_options(use_ninja=True)}
    except Exception as exc:  # torch missing at build time: pure-Python install
        warnings.warn(f"eoflow_fast: C++ extension not built ({exc}); the PyTorch reference will be used")

setup(packages=packages, package_dir=package_dir, ext_modules=ext_modules, cmdclass=cmdclass)
