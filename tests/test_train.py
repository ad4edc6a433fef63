"""plrp train: AUROC formula, a quick run that learns, determinism, the shipped model, errors.

`make model` itself (about 3-5 minutes on 2 cores) is too slow for the suite; the reduced
runs here go through the identical code path (CLI -> plrp.train.train), and
test_shipped_training_data_is_reproducible re-creates the default model's training data
bit for bit from its recorded simulation parameters. See data/README.md for the full check.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from plrp import simulate as sim
from plrp.cli import main
from plrp.errors import InputError, PlrpError
from plrp.models.checkpoint import load_native
from plrp.train import auroc, build_classifier, load_dataset, split_indices

DATA = Path(sim.__file__).parent / "data"
SMALL = ["--arch-param", "n_filters=32", "--arch-param", "n_filters2=32",
         "--arch-param", "n_hidden=32", "--threads", "1", "--batch-size", "32", "--lr", "0.003"]


def pairwise_auroc(scores, labels):
    """Independent reference: P(score_pos > score_neg) + 0.5 P(tie), over all pairs."""
    pos = np.asarray(scores, dtype=np.float64)[np.asarray(labels) == 1]
    neg = np.asarray(scores, dtype=np.float64)[np.asarray(labels) == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_auroc_matches_pairwise_reference_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        scores = rng.integers(0, 6, n).astype(float)  # many ties
        labels = rng.integers(0, 2, n)
        if labels.min() == labels.max():
            assert np.isnan(auroc(scores, labels))
            continue
        assert auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)
    assert auroc([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 1.0
    assert auroc([0.4, 0.3, 0.2, 0.1], [0, 0, 1, 1]) == 0.0


@pytest.fixture(scope="module")
def ctcf_data(tmp_path_factory):
    """A CTCF-detection data set with TP53 and SPI1 distractors (quick to learn)."""
    d = sim.simulate(3000, 200, seed=21, tasks={"CTCF": ("CTCF",)}, distractors=("TP53", "SPI1"))
    prefix = tmp_path_factory.mktemp("train") / "d"
    sim.write_outputs(prefix, d)
    return prefix


def run_train(prefix, out, *extra):
    return CliRunner().invoke(main, [
        "train", "--fasta", f"{prefix}.fa", "--labels", f"{prefix}.labels.tsv", "--out", str(out),
        "--epochs", "5", "--patience", "5", *SMALL, *extra])


@pytest.fixture(scope="module")
def trained(ctcf_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m.safetensors"
    r = run_train(ctcf_data, out, "--seed", "3", "--simulation", f"{ctcf_data}.simulation.json")
    assert r.exit_code == 0, r.output
    return out


def test_quick_run_learns_and_metrics_are_right(ctcf_data, trained):
    metrics = json.loads(trained.with_suffix(".metrics.json").read_text())
    loaded = load_native(trained)
    assert loaded.output_names == ["CTCF"] and loaded.input_length == 200
    assert loaded.meta["training"]["simulation"]["tasks"] == {"CTCF": ["CTCF"]}
    assert loaded.meta["training"]["test"] == metrics["test"]
    # recompute the held-out AUROC independently from the saved model and the split
    x, y, _ = load_dataset(f"{ctcf_data}.fa", f"{ctcf_data}.labels.tsv")
    test_idx = split_indices(len(x), 3, 0.1, 0.1)["test"]
    assert metrics["split"]["n_test"] == len(test_idx) == 300
    with torch.no_grad():
        logits = loaded.model(torch.from_numpy(x[test_idx])).double().numpy()[:, 0]
    reference = pairwise_auroc(logits, y[test_idx, 0])
    assert metrics["test"]["auroc"]["CTCF"] == pytest.approx(reference, abs=1e-5)
    assert reference > 0.9, metrics["history"]
    assert metrics["best_epoch"] <= metrics["epochs_run"] <= 5


def test_same_seed_gives_identical_weights_other_seed_differs(ctcf_data, trained, tmp_path):
    again = tmp_path / "again.safetensors"
    assert run_train(ctcf_data, again, "--seed", "3", "--simulation",
                     f"{ctcf_data}.simulation.json").exit_code == 0
    a, b = load_file(str(trained)), load_file(str(again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (trained.with_suffix(".metrics.json").read_text()
            == again.with_suffix(".metrics.json").read_text())
    other = tmp_path / "other.safetensors"
    assert run_train(ctcf_data, other, "--seed", "4", "--epochs", "1").exit_code == 0
    c = load_file(str(other))
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_shipped_default_model_generalises():
    """The shipped model on fresh simulated windows (a seed it never saw): AUROC >= 0.95."""
    loaded = load_native(DATA / "default_model.safetensors")
    metrics = json.loads((DATA / "default_model.metrics.json").read_text())
    tasks = list(sim.DEFAULT_TASKS)
    assert loaded.output_names == tasks == metrics["tasks"]
    assert loaded.spec["name"] == "plrp-default" and loaded.input_length == 200
    assert all(v >= 0.95 for v in metrics["test"]["auroc"].values()), metrics["test"]
    fresh = sim.simulate(1500, 200, seed=987654)
    with torch.no_grad():
        logits = loaded.model(torch.from_numpy(fresh.one_hot())).double().numpy()
    for j, task in enumerate(tasks):
        assert pairwise_auroc(logits[:, j], fresh.labels[:, j]) >= 0.95, task


def test_shipped_training_data_is_reproducible(tmp_path):
    """`make model`'s simulate step re-creates the recorded training FASTA and labels exactly."""
    record = json.loads((DATA / "default_model.metrics.json").read_text())
    params = record["simulation"]
    data = sim.simulate(params["n"], params["length"], seed=params["seed"], gc=params["gc"],
                        motif_rate=params["motif_rate"], distractor_rate=params["distractor_rate"],
                        max_copies=params["max_copies"], tasks=params["tasks"],
                        distractors=params["distractors"])
    sim.write_outputs(tmp_path / "train", data)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    assert digest(tmp_path / "train.fa") == record["data"]["fasta_sha256"]
    assert digest(tmp_path / "train.labels.tsv") == record["data"]["labels_sha256"]


def test_architecture_from_toml_and_unsupported_ones(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text('name = "plrp-default"\n[hparams]\nn_filters = 8\nn_hidden = 4\n')
    model = build_classifier(str(toml), ["a", "b"], 200)
    assert model.conv1.out_channels == 8 and model.output_names == ["a", "b"]
    assert model(torch.zeros(3, 4, 200)).shape == (3, 2)
    with pytest.raises(PlrpError, match="not a multi-label classifier"):
        build_classifier("bpnet", ["a"], 2114)
    with pytest.raises(PlrpError, match="unknown architecture"):
        build_classifier("nope", ["a"], 200)
    with pytest.raises(PlrpError, match="no hyper-parameter 'n_filterz'"):
        build_classifier("plrp-default", ["a"], 200, {"n_filterz": 3})
    toml.write_text('name = "plrp-default"\nn_filters = 8\n')
    with pytest.raises(InputError, match="tiny.toml.*'n_filters'"):
        build_classifier(str(toml), ["a"], 200)


def test_user_mistakes_are_one_line_errors_and_write_nothing(ctcf_data, tmp_path):
    fa = tmp_path / "x.fa"
    labels = tmp_path / "x.tsv"
    fa.write_text(">a\nACGTN\n>b\nACGTA\n")
    labels.write_text("name\tt1\na\t1\n")
    with pytest.raises(InputError, match="no labels for FASTA record 'b'"):
        load_dataset(fa, labels)
    labels.write_text("name\tt1\na\t1\nb\t2\n")
    with pytest.raises(InputError, match="line 3"):
        load_dataset(fa, labels)
    labels.write_text("name\tt1\na\t1\nb\t0\na\t1\n")
    with pytest.raises(InputError, match="line 4: window 'a' appears twice"):
        load_dataset(fa, labels)
    fa.write_text(">a\nACGTN\n>b\nACGT\n")
    labels.write_text("name\tt1\na\t1\nb\t0\n")
    with pytest.raises(InputError, match="'b' is 4 bp"):
        load_dataset(fa, labels)
    fa.write_text(">a\nACGTN\n>b\nACGT!\n")
    with pytest.raises(InputError, match="'b' position 5"):
        load_dataset(fa, labels)
    out = tmp_path / "out" / "m.safetensors"
    r = CliRunner().invoke(main, ["train", "--fasta", str(fa), "--labels", str(labels),
                                  "--out", str(out)])
    assert r.exit_code == 3 and "position 5" in r.output and "Traceback" not in r.output
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
