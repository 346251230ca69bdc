"""Build script: the package, its dependencies, and the Cython kernels in csrc/.

Every ``csrc/<name>.pyx`` becomes the extension module ``minitransformer._ext.<name>``.
OpenMP is switched on when the C compiler accepts ``-fopenmp``; without it the kernels
still build and run, on one thread.

    pip install -e '.[test]'          # what `make` does, inside .venv/
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


def compiler_supports_openmp() -> bool:
    """Compile and link a tiny OpenMP program; True when the compiler accepts -fopenmp."""
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return False
    source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(source)
        result = subprocess.run(
            [cc, "-fopenmp", str(src), "-o", str(Path(tmp) / "probe")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0


def cython_extensions() -> list:
    """One extension per csrc/*.pyx, compiled with OpenMP where available."""
    sources = sorted((HERE / "csrc").glob("*.pyx"))
    if not sources:
        return []
    import numpy
    from Cython.Build import cythonize

    openmp = compiler_supports_openmp()
    if not openmp:
        print("setup.py: the C compiler has no OpenMP; kernels will run on one thread", file=sys.stderr)
    flags = ["-O3", "-fopenmp"] if openmp else ["-O3"]
    extensions = [
        Extension(
            f"minitransformer._ext.{pyx.stem}",
            [str(pyx.relative_to(HERE))],
            include_dirs=[numpy.get_include(), str(HERE / "csrc")],
            # a change to a shared header rebuilds every module
            depends=[str(h.relative_to(HERE)) for h in sorted((HERE / "csrc").glob("*.h"))]
            + [str(p.relative_to(HERE)) for p in sorted((HERE / "csrc").glob("*.pxd"))],
            extra_compile_args=flags,
            extra_link_args=["-fopenmp"] if openmp else [],
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
    backend finds them in a regular, non-editable install."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "minitransformer" / "_ext"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted((HERE / "csrc").glob("*.cu")):
            shutil.copyfile(source, target / source.name)


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
    package_data={"minitransformer": ["py.typed", "viz/*.html"]},
    ext_modules=cython_extensions(),
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",  # BLAS for the Cython kernels (scipy.linalg.cython_blas)
        "threadpoolctl>=3.1",  # the Cython kernels hold BLAS to one thread while they run
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
        ],
        "gpu": ["cupy-cuda12x>=13"],
        "bench": ["torch==2.13.0"],  # the peer in bench/ (a CPU build installs offline here)
    },
    entry_points={"console_scripts": ["minitransformer=minitransformer.cli:main"]},
    zip_safe=False,
)
