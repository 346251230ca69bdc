"""Freed memory is kept for reuse: the second identical allocation takes no page faults."""

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import numpy as np
from minitransformer.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults_of_one_step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    temporary = np.ones(16 * 2**20 // 8)  # 16 MiB, touched
    del temporary
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_step()  # the first step maps its memory in any case
print(faults_of_one_step())
"""


def faults(mode):
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's, on Linux")
def test_a_repeated_step_reuses_its_pages():
    default, kept = faults("default"), faults("keep")
    # by default the 16 MiB go back to the kernel and fault in again (fewer than 4096 faults
    # where the kernel maps huge pages); kept, the second step finds them mapped
    assert default > 100, f"by default a 16 MiB temporary should fault in again, got {default} faults"
    assert kept < 20, f"with freed memory kept, the second step should not fault, got {kept} faults"
