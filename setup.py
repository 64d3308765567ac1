"""Build fastmotion and its compiled extension ``fastmotion._C``.

Environment switches (read at build time):
  FASTMOTION_SKIP_EXT=1    install the pure-Python package only (reference and Triton backends work)
  FASTMOTION_FORCE_CUDA=1  build the CUDA kernels even when torch or nvcc look CUDA-less
  FASTMOTION_NO_CUDA=1     never build the CUDA kernels
  MAX_JOBS=N               parallel compile jobs (read by torch's ninja builder)

torch must already be installed: use ``pip install --no-build-isolation .`` so pip does not
try to fetch a second (multi-GB) torch into an isolated build environment.
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def _extensions():
    if _flag("FASTMOTION_SKIP_EXT"):
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as exc:  # pragma: no cover - exercised only by a broken install
        raise RuntimeError(
            "fastmotion's C++ extension is built against the installed torch, but torch could not "
            "be imported. Install torch first, then `pip install --no-build-isolation .` "
            "(or set FASTMOTION_SKIP_EXT=1 to install without compiling)."
        ) from exc

    csrc = os.path.join(ROOT, "csrc")
    sources = _rel(
        glob.glob(os.path.join(csrc, "*.cpp"))
        + glob.glob(os.path.join(csrc, "ops", "*.cpp"))
        + glob.glob(os.path.join(csrc, "ops", "cpu", "*.cpp"))
    )
    with_cuda = not _flag("FASTMOTION_NO_CUDA") and (
        _flag("FASTMOTION_FORCE_CUDA") or (torch.version.cuda is not None and CUDA_HOME is not None)
    )
    include_dirs = [os.path.join(csrc, "include"), csrc]
    # torch picks the C++ standard.
    # -fno-trapping-math lets hot loops vectorize (see csrc/ops/cpu/vec_math.h).
    # -ffp-contract=off: no implicit fused multiply-adds, so results do not depend on which
    # function clone (AVX2+FMA or baseline) runs, and grid_sample's coordinate math rounds
    # exactly like PyTorch's CPU kernel (which nearest pixel is picked must not depend on the ISA).
    cxx = ["-O3", "-fopenmp", "-fno-trapping-math", "-ffp-contract=off"]
    extra = {"cxx": cxx}
    define_macros = []
    ext_cls = CppExtension
    if with_cuda:
        sources += _rel(
            glob.glob(os.path.join(csrc, "ops", "cuda", "*.cu"))
            + glob.glob(os.path.join(csrc, "ops", "cuda", "*.cpp"))
        )
        define_macros.append(("FASTMOTION_WITH_CUDA", "1"))
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        ext_cls = CUDAExtension
    ext = ext_cls(
        name="fastmotion._C",
        sources=sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
    )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()

setup(
    # Triton kernels live in the top-level kernels/ folder but ship as fastmotion.kernels
    # (a top-level package named `kernels` would clash with another PyPI project).
    packages=find_packages(include=["fastmotion", "fastmotion.*"]) + ["fastmotion.kernels"],
    package_dir={"fastmotion.kernels": "kernels"},
    package_data={"fastmotion": ["config/*.yaml", "assets/*", "assets/demo/*", "export/*.tsv"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
