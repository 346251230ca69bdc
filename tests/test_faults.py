"""Fault injection: a run directory survives kills at every rename, kills at random moments,
SIGINT and SIGTERM, a full disk, two writers and a typo, and the run then ends exactly as
an uninterrupted one: the same final.npz, metrics history and BLEU, bit for bit.

How the faults are made:
  * every rename that commits something goes through checkpoint.rename / kill_point; with
    $MINITRANSFORMER_KILL_AT_RENAME=N the process SIGKILLs itself before its N-th, so every
    window between two renames is hit, deterministically, one run per window;
  * a run is a forked child of this process calling ``cli.main`` (the code path of the
    command line, without the seconds an interpreter takes to start), killed for real;
  * a full disk is RLIMIT_FSIZE in the child (the command line ignores SIGXFSZ, so write()
    fails with EFBIG and the message can name the file);
  * the signals and the two writers use a real ``python -m minitransformer`` process too;
  * in the forked runs the curves are drawn by a stand-in that writes the history's bytes:
    matplotlib's drawing is 80% of a tiny run's time and no part of the run directory's
    logic, and curves.png is still committed by the same atomic write, rename and all.

What "the same" means: every weight of final.npz is equal (np.array_equal, not close), and
metrics.json is equal except for the wall-clock fields (train_seconds and tokens per second,
which differ between any two runs, interrupted or not). Same machine, same backend (numpy).
"""

import itertools
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minitransformer import checkpoint as checkpoint_module
from minitransformer import cli
from minitransformer import plot as plot_module
from minitransformer.checkpoint import KILL_AT_RENAME_VAR, load_checkpoint
from helpers import write_tiny_pairs


# tiny, but every mechanism is in play: dropout (the random stream), an epoch boundary, a log
# window of 3 steps that a kill cuts in the middle, evaluations, and a ring of 2 to average
TINY = {
    "name": "tiny",
    "held_out_sources": 4,
    "vocab_size": 50,
    "d_model": 16,
    "n_heads": 2,
    "d_ff": 32,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "dropout": 0.1,
    "max_len": 24,
    "max_tokens": 300,
    "warmup_steps": 4,
    "epochs": None,
    "minutes": None,
    "max_steps": 8,
    "eval_every": 3,
    "eval_sentences": 2,
    "samples": 0,
    "log_every": 3,
    "checkpoint_every": 2,
    "keep_checkpoints": 2,
    "seed": 5,
}
TIMING_FIELDS = ("train_seconds", "tokens_per_second")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("faults")
    pairs = directory / "pairs.tsv"
    write_tiny_pairs(pairs)
    config = directory / "tiny.json"
    config.write_text(json.dumps(TINY))
    long_config = directory / "long.json"
    long_config.write_text(json.dumps(dict(TINY, max_steps=100_000)))
    return {"pairs": pairs, "config": config, "long": long_config, "dir": directory}


def train_args(files, run, *more, config="config"):
    return ["train", "--config", str(files[config]), "--data", str(files["pairs"]), "--out", str(run),
            "--backend", "numpy", "--no-progress", *more]


def resume_args(run, *more):
    return ["train", "--resume", "--out", str(run), "--backend", "numpy", "--no-progress", *more]


def quick_curves(history, path, title=None):
    """The stand-in for plot.plot_curves in these tests (see the module docstring)."""
    data = json.dumps({"title": title, "history": history}).encode("utf-8")
    if hasattr(path, "write"):
        path.write(data)
    else:
        Path(path).write_bytes(data)


def forked_cli(args, log, kill_at_rename=None, file_size_limit=None, before=None, wait=True):
    """``cli.main(args)`` in a forked child, its output in ``log``; -> its exit code (-9 for
    SIGKILL), or its pid when ``wait`` is False."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            checkpoint_module._renames_done = 0
            plot_module.plot_curves = quick_curves
            if kill_at_rename is not None:
                os.environ[KILL_AT_RENAME_VAR] = str(kill_at_rename)
            if file_size_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
            if before is not None:
                before()
            code = cli.main(args)
        except BaseException as error:  # a traceback is a failure the parent reports
            import traceback

            traceback.print_exc()
            code = 98 if not isinstance(error, SystemExit) else error.code
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    if not wait:
        return pid
    return wait_for(pid)


def wait_for(pid, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} did not finish in {timeout} s")
        time.sleep(0.01)


def without_timing(metrics):
    metrics = {key: value for key, value in metrics.items() if key not in TIMING_FIELDS}
    metrics["history"] = {
        part: [{key: value for key, value in entry.items() if key not in TIMING_FIELDS} for entry in entries]
        for part, entries in metrics["history"].items()
    }
    return metrics


def outcome(run):
    """What must be identical: the final weights, and the metrics without the clock."""
    final = load_checkpoint(run / "checkpoints" / "final")
    metrics = json.loads((run / "metrics.json").read_text())
    return final["params"], without_timing(metrics)


def assert_same_outcome(run, reference, context):
    params, metrics = outcome(run)
    reference_params, reference_metrics = reference
    assert set(params) == set(reference_params), context
    for key, value in reference_params.items():
        assert np.array_equal(params[key], value), f"{context}: final.npz {key} differs"
    for key in reference_metrics:
        assert metrics[key] == reference_metrics[key], f"{context}: metrics {key} differs"
    assert metrics == reference_metrics, context


def assert_clean(run):
    """No temporary file in the run, and nothing beside it but the lock file."""
    leftovers = [path for path in run.rglob("*") if path.name.endswith(".tmp")]
    assert not leftovers, leftovers
    siblings = sorted(path.name for path in run.parent.iterdir() if path.name.startswith(f".{run.name}."))
    assert siblings == [f".{run.name}.lock"], siblings


def complete(files, run, log):
    """Bring a faulted run to its end the way a user would: --resume; or, when it says that no
    checkpoint was written yet, start it again. Returns the messages printed."""
    code = forked_cli(resume_args(run), log)
    text = log.read_text()
    if code == 1 and "no checkpoint was written yet" in text:
        code = forked_cli(train_args(files, run), log)
    assert code == 0, log.read_text()
    return log.read_text()


@pytest.fixture(scope="module")
def reference(files):
    """The uninterrupted run, and how many commit renames it makes."""
    run = files["dir"] / "reference"
    log = files["dir"] / "reference.log"
    before = checkpoint_module._renames_done
    code = forked_cli(train_args(files, run), log, kill_at_rename=10**9)  # the hook armed, never firing
    assert code == 0, log.read_text()
    # count the renames in this process too (same code, same number): run it once more here
    checkpoint_module._renames_done = 0
    again = files["dir"] / "reference-count"
    real_curves, plot_module.plot_curves = plot_module.plot_curves, quick_curves
    try:
        assert cli.main(train_args(files, again)) == 0
    finally:
        plot_module.plot_curves = real_curves
    renames = checkpoint_module._renames_done
    checkpoint_module._renames_done = before
    assert_same_outcome(again, outcome(run), "two uninterrupted runs")
    return {"run": run, "outcome": outcome(run), "renames": renames}


def test_the_reference_run_exercises_every_mechanism(reference):
    metrics = json.loads((reference["run"] / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["epochs"] > 1
    assert [entry["step"] for entry in metrics["history"]["train"]] == [3, 6]  # step 7-8 form a partial window
    assert [entry["step"] for entry in metrics["history"]["valid"]] == [3, 6, 8]
    assert reference["renames"] >= 15, reference["renames"]
    ring = sorted(path.name for path in (reference["run"] / "checkpoints").glob("step-*"))
    assert ring == ["step-00000006.npz", "step-00000008.npz"]


# --- SIGKILL at every rename ------------------------------------------------------------------


def test_sigkill_at_every_rename_then_resume_ends_as_the_uninterrupted_run(files, reference, tmp_path):
    """One run per rename window; each is killed there, brought to its end, and compared."""
    messages = []
    for n in range(1, reference["renames"] + 1):
        run, log = tmp_path / f"kill-{n:02d}" / "run", tmp_path / f"kill-{n:02d}.log"
        run.parent.mkdir()
        assert forked_cli(train_args(files, run), log, kill_at_rename=n) == -signal.SIGKILL, (n, log.read_text())
        messages.append(complete(files, run, log))
        assert "Traceback" not in log.read_text()
        assert_same_outcome(run, reference["outcome"], f"killed before rename {n}")
        assert_clean(run)
    joined = "\n".join(messages)
    # the windows that matter were hit: a stale temporary file, a save cut between its renames
    assert "temporary file(s) that an interrupted save left" in joined
    assert "falling back to the previous good checkpoint" in joined
    assert "no checkpoint was written yet" in joined


def test_sigkill_during_a_resume_and_during_an_overwrite(files, reference, tmp_path):
    """Kills at every rename of the second process too: --resume, and --overwrite of a finished run."""
    run, log = tmp_path / "run", tmp_path / "log"
    assert forked_cli(train_args(files, run), log, kill_at_rename=9) == -signal.SIGKILL
    kills = 0
    for n in (1, 2, 3, 1, 2, 3):  # each resume is killed at its n-th rename, until one gets through
        code = forked_cli(resume_args(run), log, kill_at_rename=n)
        assert code in (-signal.SIGKILL, 0), log.read_text()
        kills += code == -signal.SIGKILL
    assert kills >= 3
    complete(files, run, log)
    assert_same_outcome(run, reference["outcome"], "a resume killed again and again")

    finished = snapshot(run)
    swapped = False
    for n in range(1, 7):  # --overwrite: the old run stays whole until the new one's first checkpoint
        assert forked_cli(train_args(files, run, "--overwrite"), log, kill_at_rename=n) == -signal.SIGKILL
        if load_checkpoint(run / "checkpoints" / "last")["state"]["step"] < 8:
            swapped = True  # the new run has taken the old one's place: from here it is an ordinary run
            break
        assert snapshot(run) == finished, f"--overwrite killed at rename {n} changed the old run"
    assert swapped
    complete(files, run, log)
    assert_same_outcome(run, reference["outcome"], "an --overwrite killed at every rename before its swap")
    assert_clean(run)


def snapshot(directory):
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


# --- SIGKILL at random moments ------------------------------------------------------------------


def test_sigkill_at_random_moments(files, reference, tmp_path):
    generator = random.Random(18)
    started = time.monotonic()
    forked_cli(train_args(files, tmp_path / "timing"), tmp_path / "timing.log")
    duration = time.monotonic() - started
    for attempt in range(5):
        run, log = tmp_path / f"random-{attempt}" / "run", tmp_path / f"random-{attempt}.log"
        run.parent.mkdir()
        pid = forked_cli(train_args(files, run), log, wait=False)
        time.sleep(generator.uniform(0.0, duration))
        os.kill(pid, signal.SIGKILL)
        wait_for(pid)
        for _ in range(2):  # killed once more, at random, while resuming
            pid = forked_cli(resume_args(run), log, wait=False)
            time.sleep(generator.uniform(0.0, duration / 2))
            os.kill(pid, signal.SIGKILL)
            wait_for(pid)
        complete(files, run, log)
        assert_same_outcome(run, reference["outcome"], f"random kill {attempt}")
        assert_clean(run)


# --- SIGINT and SIGTERM -----------------------------------------------------------------------


def signal_during_step(step, signum):
    """A ``before`` hook for forked_cli: the child sends itself ``signum`` during that step."""

    def install():
        from minitransformer.model import Transformer

        real = Transformer.loss_and_grads
        calls = itertools.count(1)

        def loss_and_grads(self, *args, **kwargs):
            if next(calls) == step:
                os.kill(os.getpid(), signum)
            return real(self, *args, **kwargs)

        Transformer.loss_and_grads = loss_and_grads

    return install


@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_saves_and_the_resumed_run_ends_the_same(files, reference, tmp_path, signum, code, name):
    """The signal arrives in the middle of step 5 (between two log entries, off the save
    schedule): the step completes, a checkpoint is saved, no ring entry is added."""
    run, log = tmp_path / "run", tmp_path / "log"
    assert forked_cli(train_args(files, run), log, before=signal_during_step(5, signum)) == code, log.read_text()
    text = log.read_text()
    assert f"{name}: stopping after this step" in text and f"{name}: stopped at step 5" in text
    assert "Resume with: minitransformer train --resume" in text
    assert load_checkpoint(run / "checkpoints" / "last")["state"]["step"] == 5
    assert sorted(path.name for path in (run / "checkpoints").glob("step-*")) == ["step-00000002.npz",
                                                                                   "step-00000004.npz"]
    complete(files, run, log)
    assert_same_outcome(run, reference["outcome"], f"{name} at step 5")


def real_process(args, log):
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-m", "minitransformer", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=environment)


def wait_until(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigterm_from_outside_saves_says_so_and_exits_143(files, tmp_path):
    run = tmp_path / "run"
    with open(tmp_path / "log", "w") as log:
        process = real_process(train_args(files, run, config="long"), log)
        wait_until(lambda: (run / "checkpoints" / "last.npz").is_file())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    text = (tmp_path / "log").read_text()
    assert "SIGTERM: stopping after this step and saving a checkpoint" in text and "Traceback" not in text
    step = load_checkpoint(run / "checkpoints" / "last")["state"]["step"]
    assert f"SIGTERM: stopped at step {step}" in text
    # and it resumes from there
    code = forked_cli(resume_args(run, "--max-steps", str(step + 2)), tmp_path / "resume.log")
    assert code == 0, (tmp_path / "resume.log").read_text()
    assert f"Resuming {run} at step {step}" in (tmp_path / "resume.log").read_text()


# --- a full disk ---------------------------------------------------------------------------------


def test_a_full_disk_names_the_file_and_the_last_good_step_and_loses_nothing(files, reference, tmp_path):
    run, log = tmp_path / "run", tmp_path / "log"
    # a run stopped at step 5 (a SIGTERM, which saves), then resumed on a disk that fills up
    assert forked_cli(train_args(files, run), log, before=signal_during_step(5, signal.SIGTERM)) == 143
    saved_step = load_checkpoint(run / "checkpoints" / "last")["state"]["step"]
    assert saved_step == 5
    before = snapshot(run)
    limit = (run / "checkpoints" / "last.npz").stat().st_size // 4  # below any checkpoint's size
    log.write_text("")
    assert forked_cli(resume_args(run), log, file_size_limit=limit) == 1
    lines = [line for line in log.read_text().splitlines() if line.startswith("minitransformer: error:")]
    assert len(lines) == 1 and "Traceback" not in log.read_text(), log.read_text()
    assert "File too large" in lines[0] and str(run) in lines[0]
    assert f"the last good checkpoint, step {saved_step}" in lines[0] and "untouched" in lines[0]
    after = snapshot(run)
    for name in before:  # every checkpoint that existed is still there, byte for byte
        if name.startswith("checkpoints/"):
            assert after.get(name) == before[name], name
    complete(files, run, log)
    assert_same_outcome(run, reference["outcome"], "a full disk, then a resume")
    assert_clean(run)


def test_a_full_disk_during_overwrite_leaves_the_old_run(files, reference, tmp_path):
    run, log = tmp_path / "run", tmp_path / "log"
    assert forked_cli(train_args(files, run), log) == 0
    before = snapshot(run)
    limit = (run / "checkpoints" / "last.npz").stat().st_size // 4
    log.write_text("")
    assert forked_cli(train_args(files, run, "--overwrite"), log, file_size_limit=limit) == 1
    text = log.read_text()
    assert "File too large" in text and f"the run that was in {run}/ is untouched" in text, text
    assert snapshot(run) == before
    assert_clean(run)


# --- two writers, and readers ------------------------------------------------------------------------


def test_a_second_writer_is_refused_with_the_holders_pid_and_readers_may_read(files, tmp_path):
    run = tmp_path / "run"
    with open(tmp_path / "first.log", "w") as log:
        first = real_process(train_args(files, run, config="long"), log)
        try:
            wait_until(lambda: (run / "checkpoints" / "last.npz").is_file())
            for args in (resume_args(run), train_args(files, run, "--overwrite"), train_args(files, run)):
                second_log = tmp_path / "second.log"
                second_log.write_text("")
                assert forked_cli(args, second_log) == 1
                text = second_log.read_text()
                assert (f"another training process (PID {first.pid}) is writing this run directory" in text
                        or "already holds a run" in text), text
            # translate reads while the run trains: every file it reads was committed whole
            reader_log = tmp_path / "reader.log"
            code = forked_cli(["translate", "--checkpoint", str(run), "--backend", "numpy", "the black cat sleeps ."],
                              reader_log)
            assert code == 0, reader_log.read_text()
            assert first.poll() is None  # the first writer was never disturbed
        finally:
            first.kill()
            first.wait()
    # the kernel dropped the lock with its holder: the run resumes
    code = forked_cli(resume_args(run, "--max-steps", "1"), tmp_path / "after.log")
    assert code == 0, (tmp_path / "after.log").read_text()


# --- a typo into an existing run ---------------------------------------------------------------------


@pytest.mark.parametrize("mistake", ["typo", "typo-overwrite", "bad-config", "tiny-vocabulary", "resume-typo"])
def test_a_typo_into_an_existing_run_changes_nothing(files, reference, tmp_path, mistake):
    run = tmp_path / "run"
    assert forked_cli(train_args(files, run), tmp_path / "first.log") == 0
    before = snapshot(run)
    bad_config = tmp_path / "bad.json"
    args = {
        "typo": ["train", "--data", str(tmp_path / "typo.tsv"), "--out", str(run)],
        "typo-overwrite": ["train", "--data", str(tmp_path / "typo.tsv"), "--out", str(run), "--overwrite"],
        "bad-config": ["train", "--config", str(bad_config), "--data", str(files["pairs"]), "--out", str(run),
                       "--overwrite"],
        "tiny-vocabulary": ["train", "--config", str(bad_config), "--data", str(files["pairs"]), "--out", str(run),
                            "--overwrite"],
        "resume-typo": ["train", "--resume", "--data", str(tmp_path / "typo.tsv"), "--out", str(run)],
    }[mistake]
    bad_config.write_text(json.dumps(dict(TINY, d_model=30, n_heads=4) if mistake == "bad-config"
                                     else dict(TINY, vocab_size=17)))
    log = tmp_path / "log"
    assert forked_cli(args + ["--backend", "numpy", "--no-progress"], log) == 1
    text = log.read_text()
    errors = [line for line in text.splitlines() if line.startswith("minitransformer: error:")]
    assert len(errors) == 1 and "Traceback" not in text, text
    expected = {"typo": "typo.tsv: no such file", "typo-overwrite": "typo.tsv: no such file",
                "bad-config": "d_model=30 is not divisible by n_heads=4",
                "tiny-vocabulary": "SentencePiece cannot build a vocabulary of 17 pieces",
                "resume-typo": "--data differs"}[mistake]
    assert expected in errors[0], errors[0]
    assert snapshot(run) == before
    assert_clean(run)
