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


# --- head importance over a data set, in the HTML page ---------------------------------------


def test_the_trace_page_shows_the_data_sets_head_importance_as_the_mean_of_each_sentences(run, capsys):
    """inspect heads writes E_x |∂L(x)/∂g| over the sentences it read; translate --html
    --head-importance puts it in the page, and it equals the mean of the sentences' own
    importances, each computed alone here, then normalized per layer."""
    import re

    import numpy as np

    from minitransformer.checkpoint import load_for_inference
    from minitransformer.interpret import gates
    from minitransformer.interpret.evaluate import read_pairs
    from minitransformer.interpret.importance import normalize_per_layer

    assert inspect(run, "heads", "--data", str(run / "test.tsv"), "--sentences", "5", "--no-ablation") == 0
    heads = run / "out" / "heads.json"
    assert json.loads(heads.read_text())["sentences"] == 5
    page = run / "page.html"
    assert cli.main(["translate", "the black cat sleeps .", "--checkpoint", str(run / "run"), "--backend", "numpy",
                     "--html", str(page), "--head-importance", str(heads)]) == 0
    text = page.read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', text, re.S).group(1))
    shown = data["dataset_importance"]
    assert shown["label"].startswith(f"over 5 sentences of {run / 'test.tsv'}")
    # each sentence alone: its own batch of one, its own backward
    model, tokenizer, _ = load_for_inference(run / "run", backend="numpy")
    singles = []
    for english, french in read_pairs(run / "test.tsv")[:5]:
        bos, eos = tokenizer.bos_id, tokenizer.eos_id
        src = np.array([tokenizer.encode_src(english)])
        target = list(tokenizer.encode_tgt(french))
        with gates.head_gates(model):
            model.loss_and_grads(src, np.array([[bos] + target]), np.array([target + [eos]]))
            singles.append({stack: np.abs(g) for stack, g in gates.gate_gradients(model).items()})
    for stack in gates.STACKS:
        expected = normalize_per_layer(np.mean([single[stack] for single in singles], axis=0))
        np.testing.assert_allclose(np.array(shown["importance"][stack]), expected, rtol=1e-4, atol=1e-5, err_msg=stack)
    # and the page has the place the tables are drawn in, beside the sentence's own
    assert 'id="dataset-importance"' in text and '"head_importance"' in text


@pytest.mark.parametrize("args, code, message", [
    (["--head-importance", "{heads}"], 2, "--head-importance goes with --html FILE"),
    (["--html", "{page}", "--head-importance", "{missing}"], 1, "--head-importance: cannot read"),
    (["--html", "{page}", "--head-importance", "{bad}"], 1, "encoder importance has shape (1, 4)"),
])
def test_a_bad_head_importance_file_is_one_line(run, capsys, args, code, message):
    (run / "bad-heads.json").write_text(json.dumps({"importance": {"encoder": [[1, 2, 3, 4]]}}))
    paths = {"heads": str(run / "out" / "heads.json"), "page": str(run / "bad.html"),
             "missing": str(run / "none.json"), "bad": str(run / "bad-heads.json")}
    assert cli.main(["translate", "the black cat sleeps .", "--checkpoint", str(run / "run"), "--backend", "numpy",
                     *[arg.format(**paths) for arg in args]]) == code
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error
