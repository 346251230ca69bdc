"""`minitransformer inspect` end to end on a tiny trained run: each subcommand writes its
figures, and every bad input ends with one line on stderr and exit code 1 or 2."""

import json

import pytest

from minitransformer import cli

from helpers import write_tiny_pairs
from test_cli import TINY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run trained on the 48 tiny pairs (6 steps: enough to be a run, not to translate)."""
    folder = tmp_path_factory.mktemp("inspect")
    pairs = write_tiny_pairs(folder / "pairs.tsv")
    config = folder / "tiny.json"
    config.write_text(json.dumps(TINY))
    assert cli.main(["train", "--config", str(config), "--data", str(pairs), "--out", str(folder / "run"),
                     "--backend", "numpy", "--no-progress"]) == 0
    # the tiny pairs are word for word: "the ADJ NOUN VERB ." -> "le NOM ADJECTIF VERBE ."
    lines = pairs.read_text(encoding="utf-8").splitlines()[:6]
    (folder / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "test.align").write_text("0-0 1-2 2-1 3-3 4-4\n" * 6)
    return folder


def inspect(run, *args):
    return cli.main(["inspect", *args, "--checkpoint", str(run / "run"), "--out", str(run / "out"),
                     "--backend", "numpy", "--no-progress"])


def test_every_subcommand_writes_its_figures(run, capsys):
    data = ["--data", str(run / "test.tsv"), "--sentences", "4"]
    assert inspect(run, "heads", *data) == 0
    assert inspect(run, "cluster", *data, "--clusters", "2") == 0
    assert inspect(run, "align", *data, "--alignments", str(run / "test.align"), "--ig-steps", "8") == 0
    assert inspect(run, "attribute", "the black cat sleeps .", "--french", "le chat noir dort .",
                   "--alignment", "0-0 1-2 2-1 3-3 4-4", "--layer", "0", "--head", "1", "--ig-steps", "8") == 0
    for name in ("importance.png", "pruning.png", "clusters-encoder.png", "attribute.png", "align.json"):
        assert (run / "out" / name).stat().st_size > 0, name
    report = json.loads((run / "out" / "align.json").read_text())
    assert set(report["aer"]) >= {"attention", "rollout", "integrated gradients"}
    assert "AER" in capsys.readouterr().out


@pytest.mark.parametrize("args, code, message", [
    (["align", "--alignments", "{bad_align}", "--data", "{tsv}"], 1, "has 2 lines but there are 6 sentence pairs"),
    (["attribute", "the black cat sleeps .", "--layer", "3", "--head", "0"], 1, "layer 3 is out of range"),
    (["attribute", "the black cat sleeps .", "--layer", "0", "--head", "9"], 1, "head 9 is out of range"),
    (["attribute", "the black cat sleeps .", "--layer", "0"], 2, "--layer and --head go together"),
    (["attribute", "the black cat .", "--french", "le chat .", "--alignment", "0-5"], 1, "link 0-5 is outside"),
    (["cluster", "--data", "{tsv}", "--clusters", "9"], 2, "--clusters must lie in 1–2"),
    (["heads", "--data", "{missing}"], 1, "cannot read"),
])
def test_bad_inputs_get_one_line(run, capsys, args, code, message):
    (run / "bad.align").write_text("0-0\n0-0\n")
    paths = {"bad_align": str(run / "bad.align"), "tsv": str(run / "test.tsv"), "missing": str(run / "none.tsv")}
    assert inspect(run, *[arg.format(**paths) for arg in args]) == code
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error


def test_a_run_without_its_files_is_one_line(run, capsys, tmp_path):
    assert cli.main(["inspect", "heads", "--checkpoint", str(tmp_path / "nothing"), "--backend", "numpy"]) == 1
    assert "no run at" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["inspect", "heads", "--checkpoint", str(tmp_path / "empty"), "--backend", "numpy"]) == 1
    error = capsys.readouterr().err
    assert "cannot use the run" in error and error.count("\n") == 1
