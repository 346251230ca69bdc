"""A pip-installed package is whole: the wheel, installed into a fresh virtual environment,
trains the toy task from an empty directory and translates with the run it just trained.

Offline and quick:
  * the wheel is built from a copy of the source tree with ``pip wheel --no-build-isolation
    --no-index`` (the build dependencies are the ones already installed). Where the kernels of
    this checkout are already compiled and newer than their sources, they are put where
    setuptools looks for its own build products, so it skips recompiling them, exactly as it
    does on a second build; otherwise the build compiles them (a minute or two);
  * the fresh environment has no pip and no packages of its own: the wheel is installed into
    it with this environment's pip (``pip --python``), and a .pth file lends it this
    environment's dependencies (numpy, sentencepiece, …) without lending it minitransformer,
    which is installed here in editable mode, by a finder that the .pth does not run. The test
    checks that the package it imports is the wheel's.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_COPIED = {".venv", "runs", "build", "dist", ".git", "__pycache__", ".pytest_cache", ".hypothesis"}


def copy_source_tree(target):
    def ignore(directory, names):
        return [name for name in names if name in NOT_COPIED or name.endswith((".egg-info", ".so", ".pyc"))]

    shutil.copytree(REPO, target, ignore=ignore)


def reuse_compiled_kernels(tree):
    """Seed ``tree``'s build/ with this checkout's compiled kernels when they are up to date."""
    sources = sorted((REPO / "csrc").glob("*.pyx")) + sorted((REPO / "csrc").glob("*.h"))
    sources += sorted((REPO / "csrc").glob("*.pxd"))
    newest_source = max(path.stat().st_mtime for path in sources)
    built = {pyx.stem: next((REPO / "minitransformer" / "_ext").glob(f"{pyx.stem}.*.so"), None)
             for pyx in sorted((REPO / "csrc").glob("*.pyx"))}
    generated = {stem: REPO / "csrc" / f"{stem}.c" for stem in built}
    if not all(path is not None and path.stat().st_mtime > newest_source for path in built.values()):
        return False
    if not all(path.is_file() and path.stat().st_mtime > newest_source for path in generated.values()):
        return False
    lib = tree / "build" / f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}" / "minitransformer" / "_ext"
    lib.mkdir(parents=True)
    for stem, so_file in built.items():
        # copied after the sources, so they are newer than them, as setuptools requires to skip
        shutil.copy(generated[stem], tree / "csrc" / generated[stem].name)
        shutil.copy(so_file, lib / so_file.name)
    return True


def run(command, cwd, env, timeout=300):
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_environment_and_trains_the_toy_task(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    tree = tmp_path / "source"
    copy_source_tree(tree)
    reuse_compiled_kernels(tree)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", tmp_path / "dist", "."], cwd=tree, env=env, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("minitransformer-*.whl")

    fresh = tmp_path / "fresh"
    run([sys.executable, "-m", "venv", "--without-pip", fresh], cwd=tmp_path, env=env)
    python = fresh / "bin" / "python"
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=tmp_path, env=env).stdout.strip())
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps", "-q", wheel],
        cwd=tmp_path, env=env)

    # an empty directory, far from the checkout: the toy corpus must come from the package
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run([python, "-c", "import minitransformer; print(minitransformer.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(fresh), where.stdout
    command = fresh / "bin" / "minitransformer"
    trained = run([command, "train", "--config", "toy", "--max-steps", "2", "--no-progress"], cwd=work, env=env)
    assert "Done:" in trained.stdout, trained.stdout
    assert "Reading the toy corpus shipped with the package" in trained.stdout  # one line says where
    assert "Traceback" not in trained.stderr
    assert (work / "runs" / "toy" / "checkpoints" / "final.npz").is_file()
    # translate finds the run it just trained (runs/toy in the working directory)
    translated = run([command, "translate", "the black cat sleeps ."], cwd=work, env=env)
    assert len(translated.stdout.splitlines()) == 1 and "Traceback" not in translated.stderr
