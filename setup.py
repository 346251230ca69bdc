"""Build script: the package, its dependencies, and the Cython kernels in csrc/.

Every ``csrc/<name>.pyx`` becomes the extension module ``minitransformer._ext.<name>``.

Flags, and why:
  * ``-O3 -fopenmp-simd`` always: the row loops' ``#pragma omp simd`` reductions vectorize
    even where OpenMP's threads are not available.
  * OpenMP's threads where the compiler has them: ``-fopenmp`` (GCC, LLVM clang), or on
    macOS with Apple clang ``-Xpreprocessor -fopenmp -lomp`` when libomp is installed
    (``brew install libomp``). Without them the kernels build and run on one thread, and
    the build says so once.
  * Never ``-march=native``: the build must run on any CPU of its architecture. The
    vector code for each instruction set is compiled with function attributes and
    chosen at run time (csrc/kernels.h).

    pip install -e '.[test]'          # what `make` does, inside .venv/
    pip install -e '.[mpi]'           # MPI for `make train NP=2` (mpi4py, MPICH's wheel)
    python setup.py build_ext --inplace
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def compiles(cc, compile_flags, link_flags, source) -> bool:
    """True when `cc` compiles and links `source` with these flags."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(source)
        result = subprocess.run(
            [cc, *compile_flags, str(src), "-o", str(Path(tmp) / "probe"), *link_flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0


def openmp_flags():
    """(compile flags, link flags) that give OpenMP threads, or None when there are none."""
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return None
    source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag, but its front end takes the pragma and
        # links against Homebrew's (or MacPorts') libomp
        for prefix in ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp", "/opt/local"):
            candidates.append(
                (["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"], [f"-L{prefix}/lib", "-lomp"])
            )
    for compile_flags, link_flags in candidates:
        if compiles(cc, compile_flags, link_flags, source):
            return compile_flags, link_flags
    return None


def cython_extensions() -> list:
    """One extension per csrc/*.pyx, compiled with OpenMP where available."""
    sources = sorted((HERE / "csrc").glob("*.pyx"))
    if not sources:
        return []
    import numpy
    from Cython.Build import cythonize

    openmp = openmp_flags()
    if openmp is None:
        hint = " (on macOS: brew install libomp)" if sys.platform == "darwin" else ""
        print(f"setup.py: warning: the C compiler has no OpenMP{hint}; the kernels will run on one thread",
              file=sys.stderr)
    compile_flags, link_flags = openmp or ([], [])
    extensions = [
        Extension(
            f"minitransformer._ext.{pyx.stem}",
            [str(pyx.relative_to(HERE))],
            include_dirs=[numpy.get_include(), str(HERE / "csrc")],
            # a change to a shared header rebuilds every module
            depends=[str(h.relative_to(HERE)) for h in sorted((HERE / "csrc").glob("*.h"))]
            + [str(p.relative_to(HERE)) for p in sorted((HERE / "csrc").glob("*.pxd"))],
            extra_compile_args=["-O3", "-fopenmp-simd", *compile_flags],
            extra_link_args=link_flags,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for pyx in sources
    ]
    return cythonize(
        extensions,
        include_path=[str(HERE / "csrc")],
        compiler_directives={"language_level": "3"},
    )


class build_py_with_cuda_sources(build_py):
    """Also ship csrc/*.cu inside the package (minitransformer/_ext/), where the CuPy
    backend finds them in a regular, non-editable install, and the toy corpus
    data/toy-*.tsv (minitransformer/corpus/data/), so that an installed package trains
    `--config toy` from any directory (minitransformer/train.py:resolve_data_path)."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "minitransformer" / "_ext"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted((HERE / "csrc").glob("*.cu")):
            shutil.copyfile(source, target / source.name)
        corpus = Path(self.build_lib) / "minitransformer" / "corpus" / "data"
        corpus.mkdir(parents=True, exist_ok=True)
        for source in sorted((HERE / "data").glob("toy-*.tsv")):
            shutil.copyfile(source, corpus / source.name)


setup(
    name="minitransformer",
    cmdclass={"build_py": build_py_with_cuda_sources},
    version="0.1.0",
    description="An encoder-decoder Transformer in NumPy with every gradient written by hand",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["minitransformer", "minitransformer.*"]),
    package_data={"minitransformer": ["viz/*.html"]},
    ext_modules=cython_extensions(),
    install_requires=[
        "numpy>=1.24",
        "sentencepiece>=0.1.99",
        "sacrebleu>=2.3",
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            # NVRTC, for tests/test_cuda_compile.py: compiles csrc/attention.cu without a GPU
            # (12.8 or later knows Blackwell; no wheel exists for macOS, where the test skips)
            'nvidia-cuda-nvrtc-cu12>=12.8; sys_platform != "darwin"',
            # the chapters as notebooks (docs/make_notebooks.py) and their headless run
            # (tests/test_course.py)
            "jupytext>=1.16",
            "nbclient>=0.10",
            "ipykernel>=6",
        ],
        "gpu": ["cupy-cuda12x>=13"],
        # data- and sequence-parallel training over MPI (minitransformer/parallel/): mpi4py
        # and MPICH itself from a wheel (mpiexec lands in the environment's bin/), so no
        # system MPI is needed; mpi4py finds the wheel's libmpi at run time
        "mpi": ["mpi4py>=4.1.1", 'mpich; sys_platform == "linux" or sys_platform == "darwin"'],
        # the peer in bench/ (a CPU build installs offline here), and the BLAS report
        "bench": ["torch==2.13.0", "threadpoolctl>=3.1"],
    },
    entry_points={"console_scripts": ["minitransformer=minitransformer.cli:main"]},
    zip_safe=False,
)
