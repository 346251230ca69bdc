"""The C kernels (csrc/kernels.h) on their own: tests/c/check_kernels.c, natively and on ARM.

check_kernels.c compares every instruction-set path this CPU runs (the portable micro-kernel's
products and transposes, the row kernels, the dropout kernel) with plain C, on random shapes
that include partial tiles, edge columns and fully masked rows, and prints
"N passed, N failed".

The same program is cross-compiled for aarch64 and run under qemu-aarch64, where both tools
exist (Debian: gcc-aarch64-linux-gnu, qemu-user; .ci/run installs them), so the NEON path
is proven on an x86-64 machine too. qemu emulates the instructions, so this checks what
the compiler made of the C for NEON, not NEON's speed.
"""

import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "tests" / "c" / "check_kernels.c"
FLAGS = ["-O3", "-fopenmp-simd", "-std=gnu11", "-Wall", "-Wno-unused-function", f"-I{REPO / 'csrc'}"]
CROSS_CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"


def native_cc():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("cc")


def build_and_run(compile_command, run_command, tmp_path):
    """Compile, run, and return (paths checked, passed, failed) from the program's output."""
    built = subprocess.run(compile_command, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(compile_command)} failed:\n{built.stderr[-4000:]}"
    ran = subprocess.run(run_command, capture_output=True, text=True, timeout=600)
    output = ran.stdout + ran.stderr
    summary = re.search(r"^(\d+) passed, (\d+) failed$", output, re.MULTILINE)
    assert summary, f"no summary line in the output:\n{output[-4000:]}"
    failures = [line for line in output.splitlines() if line.startswith("NOT OK")]
    assert ran.returncode == 0 and not failures, "\n".join(failures[:40])
    paths = [line.split()[1] for line in output.splitlines() if line.startswith("OK ")]
    return paths, int(summary.group(1)), int(summary.group(2))


@pytest.mark.skipif(native_cc() is None, reason="no C compiler found")
def test_every_path_of_this_cpu_matches_plain_c(tmp_path):
    from minitransformer import _ext

    program = tmp_path / "check_kernels"
    paths, passed, failed = build_and_run(
        [native_cc(), *FLAGS, str(SOURCE), "-o", str(program), "-lm"], [str(program)], tmp_path
    )
    assert passed > 1000 and failed == 0
    if _ext.attention is not None:
        # the C program and the extension see the same CPU, so the same paths
        assert sorted(paths) == sorted(_ext.isa_paths())


@pytest.mark.skipif(
    shutil.which(CROSS_CC) is None or shutil.which(QEMU) is None,
    reason=f"the ARM check needs {CROSS_CC} and {QEMU} (apt-get install gcc-aarch64-linux-gnu qemu-user)",
)
def test_neon_path_matches_plain_c_under_qemu(tmp_path):
    program = tmp_path / "check_kernels_aarch64"
    paths, passed, failed = build_and_run(
        [CROSS_CC, *FLAGS, "-static", str(SOURCE), "-o", str(program), "-lm"], [QEMU, str(program)], tmp_path
    )
    assert sorted(paths) == ["baseline", "neon"]
    assert passed > 1000 and failed == 0
