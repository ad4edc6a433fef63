"""The evaluation job: windows and truth, then a small end-to-end run on a motif detector."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plrp import evaluate as ev
from plrp.cli import main
from plrp.errors import InputError, PlrpError
from plrp.models.architectures import build_model
from plrp.models.checkpoint import save_checkpoint
from plrp.simulate import load_motifs, simulate, write_outputs


# ----------------------------------------------------------------------------- helpers

def motif_detector(seed: int = 0):
    """A DefaultCNN whose weights detect CTCF on both strands (no training).

    conv1 filters 0/1 are the CTCF log-odds matrix and its reverse complement with a bias at
    40% of the best score; filters 2..7 are random "noise" detectors that leak a little into
    the output through small weights, so plain LRP spreads some relevance off the motif.
    """
    g = torch.Generator().manual_seed(seed)
    model = build_model("plrp-default", n_filters=8, kernel_size=19, n_filters2=4,
                        kernel_size2=5, pool=4, n_hidden=4, dropout=0.0, n_outputs=1,
                        output_names=["CTCF"])
    lo = torch.tensor(load_motifs(["CTCF"])["CTCF"].log_odds(), dtype=torch.float32)  # (4, W)
    w = lo.shape[1]
    a = (19 - w) // 2
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        model.conv1.weight[:2] = 0.0
        model.conv1.weight[0, :, a:a + w] = lo
        model.conv1.weight[1, :, a:a + w] = lo.flip(0).flip(1)   # reverse complement
        model.conv1.bias[:2] = -0.4 * lo.max(dim=0).values.sum()
        model.conv1.weight[2:] *= 3.0
        model.conv2.weight[0] = 0.05 * torch.randn(8, 5, generator=g).abs()
        model.conv2.weight[0, :2, 2] = 1.0
        model.conv2.bias[0] = 0.0
        model.fc1.weight[0] = torch.tensor([1.0, 0.05, 0.05, 0.05])
        model.fc1.bias[0] = 0.0
        model.fc2.weight[0] = torch.tensor([1.0, 0.1, 0.1, 0.1])
        model.fc2.bias[0] = -2.0
    return model.eval()


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    data = simulate(48, 200, seed=11, tasks={"CTCF": ("CTCF",)}, distractors=("TP53",),
                    motif_rate=0.7, distractor_rate=0.5)
    write_outputs(d / "sim", data)
    save_checkpoint(d / "detector.safetensors", motif_detector())
    return d


# ----------------------------------------------------------------------------- windows

def test_windows_tile_long_records_and_truth_is_clipped(tmp_path):
    fa = tmp_path / "x.fa"
    fa.write_text(">a\n" + "A" * 10 + "\n>b\n" + "C" * 25 + "\n>c\n" + "G" * 4 + "\n")
    windows, sizes = ev.load_windows(fa, 10)
    assert windows.chrom == ["a", "b", "b", "b"]
    assert list(windows.start) == [0, 0, 10, 15]        # last window aligned to the end
    assert windows.skipped_short == ["c"] and sizes == {"a": 10, "b": 25, "c": 4}
    assert windows.x.shape == (4, 4, 10) and windows.x[1, 1].sum() == 10
    bed = tmp_path / "t.bed"
    bed.write_text("track name=x\nb\t8\t12\tM\t0\t+\nb\t20\t23\tM\nb\t2\t4\tOTHER\n")
    truth = ev.read_truth_bed(bed, sizes)
    mask, complete = ev.truth_masks(windows, truth, ["M"])
    assert np.flatnonzero(mask[1]).tolist() == [8, 9]          # clipped at the window end
    assert np.flatnonzero(mask[2]).tolist() == [0, 1]           # 8..12 in window 10..20
    assert np.flatnonzero(mask[3]).tolist() == [5, 6, 7]        # 20..23 in window 15..25
    assert complete[:, 0].tolist() == [False, False, False, True]
    assert not mask[0].any()


def test_truth_bed_errors_name_the_line(tmp_path):
    bed = tmp_path / "t.bed"
    bed.write_text("a\t0\t5\tM\nzz\t1\t2\tM\n")
    with pytest.raises(InputError, match="line 2.*'zz'"):
        ev.read_truth_bed(bed, {"a": 10})
    bed.write_text("a\t5\t50\tM\n")
    with pytest.raises(InputError, match="line 1.*outside"):
        ev.read_truth_bed(bed, {"a": 10})


def test_truth_bed_is_read_like_every_bed_gzip_included(tmp_path):
    import gzip

    from plrp.jobs.plot import Region, read_truth

    text = "track name=t\na\t1\t5\tM\nb\t0\t3\tN\n"
    plain, packed = tmp_path / "t.bed", tmp_path / "t.bed.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    sizes = {"a": 10, "b": 10}
    want = [ev.TruthInterval("a", 1, 5, "M"), ev.TruthInterval("b", 0, 3, "N")]
    assert ev.read_truth_bed(plain, sizes) == want
    assert ev.read_truth_bed(packed, sizes) == want       # was a UnicodeDecodeError traceback
    assert read_truth(packed, Region("a", 0, 10)) == [(1, 5, "M")]
    plain.write_text("a\t1\t5\tM\na\t1\t5\n")
    with pytest.raises(InputError, match="t.bed: line 2.*at least 4 columns"):
        ev.read_truth_bed(plain, sizes)


def test_target_motifs_by_name_and_and_task():
    names = {"CTCF", "SPI1", "TP53"}
    assert ev.resolve_target_motifs("CTCF", names, None) == ["CTCF"]
    assert ev.resolve_target_motifs("CTCF_AND_SPI1", names, None) == ["CTCF", "SPI1"]
    assert ev.resolve_target_motifs("task0", names, ["TP53"]) == ["TP53"]
    with pytest.raises(InputError, match="--motifs"):
        ev.resolve_target_motifs("task0", names, None)


def test_settings_lrp_once_then_each_variant():
    s = ev.settings_for([0, 0.5, 0.1], ["lambda", "m"])
    assert [(x.method, x.p) for x in s] == [("lrp", 0.0), ("plrp-lambda", 0.1),
                                            ("plrp-lambda", 0.5), ("plrp-m", 0.1), ("plrp-m", 0.5)]
    with pytest.raises(PlrpError):
        ev.settings_for([1.0], ["lambda"])
    with pytest.raises(PlrpError):
        ev.settings_for([0.1], ["mu"])


# ----------------------------------------------------------------------------- end to end

def test_small_evaluation_reproduces_the_direction_of_the_findings(small_sim):
    res = ev.run_evaluation(small_sim / "sim.fa", small_sim / "sim.motifs.bed",
                            model=small_sim / "detector.safetensors", p_values=[0, 0.5],
                            variants=["lambda", "m"], n_steps=5, step_size=2, progress=False)
    (t,) = res.targets
    rows = {(r["method"], r["p"]): r for r in t.rows}
    lrp = rows["lrp", 0.0]
    assert t.n_windows == t.n_truth_windows > 10
    assert np.isfinite(lrp["conservation_error"]) and lrp["aopc"] > 0
    for variant in ("plrp-lambda", "plrp-m"):
        r = rows[variant, 0.5]
        assert r["gini"] > lrp["gini"]
        assert r["rma"] >= lrp["rma"] - 1e-12
    rnd = next(r for r in t.rows if r["method"] == "random")
    assert lrp["aopc"] > rnd["aopc"]     # removing LRP's top positions beats a random order
    assert math.isclose(lrp["score"], rnd["score"])


def test_cli_writes_tsv_json_figures_and_report(small_sim, tmp_path):
    report = tmp_path / "eval.md"
    report.write_text("# Notes\n\nkept\n\n<!-- evaluate:begin -->\nSTALE RESULTS\n"
                      "<!-- evaluate:end -->\n"
                      "\ntail stays\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, [
        "evaluate", "--fasta", str(small_sim / "sim.fa"), "--truth",
        str(small_sim / "sim.motifs.bed"), "--model", str(small_sim / "detector.safetensors"),
        "--p", "0,0.3,0.5", "--variant", "lambda", "--morf-steps", "3", "--max-windows", "8",
        "--compare-p", "0.3,0.5",
        "--out", str(out), "--report", str(report), "--quiet"])
    assert r.exit_code == 0, r.output
    lines = (out / "metrics.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:4] == ["target", "method", "variant", "p"]
    every = ["lrp", "plrp-lambda", "plrp-lambda", "gradient_x_input", "ism", "deep_lift_shap",
             "integrated_gradients", "random"]
    assert [ln.split("\t")[1] for ln in lines[1:]] == every          # --baselines all
    data = json.loads((out / "metrics.json").read_text(),
                      parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert data["targets"][0]["rows"][-1]["p"] is None             # the random row
    assert data["targets"][0]["n_windows"] == 8
    assert len(data["targets"][0]["morf_mean_curves"]["lrp"]) == 4
    for name in ("metrics_vs_p.CTCF.png", "morf.CTCF.png", "methods.CTCF.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.read_text()
    assert "kept" in text and "tail stays" in text and "STALE RESULTS" not in text
    assert "| plrp-lambda | 0.30 |" in text and "out/metrics_vs_p.CTCF.png" in text
    table = [ln.split(" | ")[0].lstrip("| ") for ln in text.splitlines()
             if ln.startswith("| ") and " ± " in ln]
    assert table == every                       # one row per method in the report's table
    versus = [ln.split(" | ")[0].lstrip("| ") for ln in text.splitlines()
              if ln.startswith("| ") and (" tie" in ln or " better" in ln or " worse" in ln)]
    # PLRP-lambda at each --compare-p against LRP and each baseline
    assert versus == 2 * (["lrp"] + every[3:-1])
    assert "PLRP-lambda at p = 0.3 against" in text and "PLRP-lambda at p = 0.5 against" in text


def test_baselines_option_and_help_list_the_registered_baselines(small_sim, tmp_path):
    from plrp.baselines import BASELINES

    r = CliRunner().invoke(main, ["evaluate", "--help"])
    assert r.exit_code == 0
    help_text = " ".join(r.output.split())
    assert all(name in help_text for name in BASELINES)
    args = ["evaluate", "--fasta", str(small_sim / "sim.fa"), "--truth",
            str(small_sim / "sim.motifs.bed"), "--model", str(small_sim / "detector.safetensors"),
            "--p", "0", "--morf-steps", "2", "--max-windows", "4", "--quiet"]
    r = CliRunner().invoke(main, args + ["--baselines", "ism,nope", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "unknown baseline 'nope'" in r.output
    assert not (tmp_path / "a").exists()
    r = CliRunner().invoke(main, args + ["--baselines", "gradient_x_input",
                                         "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "b" / "metrics.tsv").read_text().splitlines()[1:]
    assert [ln.split("\t")[1] for ln in rows] == ["lrp", "gradient_x_input", "random"]
    r = CliRunner().invoke(main, args + ["--baselines", "ism", "--compare-p", "0.2",
                                         "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "--compare-p 0.2" in r.output
    r = CliRunner().invoke(main, args + ["--baselines", "none", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "c" / "methods.CTCF.png").exists()


def test_cli_user_errors_are_one_line(small_sim, tmp_path):
    args = ["evaluate", "--fasta", str(small_sim / "sim.fa"), "--truth",
            str(small_sim / "sim.motifs.bed"), "--model", str(small_sim / "detector.safetensors"),
            "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(main, args + ["--target", "nope"])
    assert r.exit_code != 0 and "not an output of the model" in r.output
    r = CliRunner().invoke(main, args + ["--p", "0,x"])
    assert r.exit_code != 0 and "comma-separated numbers" in r.output
    assert not (tmp_path / "o").exists()


def test_findings_verdicts_on_constructed_rows():
    def row(method, p, gini, rma, aopc, rra=0.5):
        return {"method": method, "p": p, "gini": gini, "gini_sem": 0.001, "rma": rma,
                "rma_sem": 0.001, "rra": rra, "aopc_top": aopc}
    rows = [row("lrp", 0.0, 0.80, 0.90, 10.0),
            row("plrp-lambda", 0.2, 0.85, 0.95, 9.5), row("plrp-lambda", 0.5, 0.90, 0.92, 9.2),
            row("plrp-m", 0.2, 0.79, 0.90, 8.0), row("plrp-m", 0.5, 0.86, 0.9005, 9.9)]
    verdicts = ev.findings(rows)

    def got(prefix):
        (holds,) = [h for claim, h, _ in verdicts if claim.startswith(prefix)]
        return holds
    assert got("plrp-lambda: sparsity") is True
    assert got("plrp-lambda: RMA rises with p") is True
    assert got("plrp-lambda: faithfulness for the top features") is True
    assert got("plrp-m: sparsity") is False          # dips at p = 0.2
    assert got("plrp-m: RMA rises with p") is False      # +0.0005 < 2 sem
    assert got("plrp-m: faithfulness for the top features") is False
    lam_vs_m = [h for c, h, _ in ev.findings(rows) if c.startswith("PLRP-lambda at least")]
    assert lam_vs_m == [False]                                          # AOPC 9.2 < 9.9 at 0.5


def test_baseline_rows_score_that_baselines_attributions(small_sim):
    """The gradient x input row holds the metrics of x * ds/dx computed here in float64,
    including the share of relevance on an ignored motif (the sim's TP53 distractors)."""
    windows, sizes = ev.load_windows(small_sim / "sim.fa", 200)
    intervals = ev.read_truth_bed(small_sim / "sim.motifs.bed", sizes)
    ignored = [iv for iv in intervals if iv.name == "TP53"]
    model = motif_detector()
    settings = ev.settings_for([0], [], baselines=["gradient_x_input"])
    res = ev.evaluate_target(model, windows, intervals, "CTCF", model.target_specs()["CTCF"],
                             settings, ignored=ignored, n_steps=3, progress=False)
    row = next(r for r in res.rows if r["method"] == "gradient_x_input")
    assert res.ignored_motifs == ["TP53"] and math.isnan(row["conservation_error"])

    mask, complete = ev.truth_masks(windows, intervals, ["CTCF"])
    idx = np.flatnonzero(complete.any(axis=1))
    other, _ = ev.truth_masks(windows, ignored, ["TP53"])
    x = torch.from_numpy(windows.x[idx]).double().requires_grad_(True)
    motif_detector().double()(x)[:, 0].sum().backward()
    r = (x.grad * x).sum(dim=1).detach().numpy()                     # (N, L)
    pos = np.clip(r, 0, None)
    rma = (pos * mask[idx]).sum(1) / pos.sum(1)
    has_tp53 = other[idx].any(axis=1)
    on_tp53 = (pos * other[idx]).sum(1)[has_tp53] / pos.sum(1)[has_tp53]
    assert row["n_windows"] == idx.size and has_tp53.sum() >= 3
    assert row["rma"] == pytest.approx(rma.mean(), rel=1e-5)
    assert row["ignored:TP53"] == pytest.approx(on_tp53.mean(), rel=1e-5)
    assert row["ignored:TP53_n"] == has_tp53.sum()
    assert row["stored"] == pytest.approx((r != 0).mean(), rel=1e-6)


def test_versus_pairs_the_windows():
    """A small, consistent per-window gain is 'better' although the windows spread widely;
    NaN windows are left out; for lower-is-better metrics the verdict flips."""
    spread = np.linspace(0.0, 10.0, 40)
    a, b = spread + 0.1 + 0.01 * np.sin(np.arange(40)), spread.copy()
    b[3] = np.nan
    d, sem, verdict = ev.versus(a, b, higher_is_better=True)
    keep = np.isfinite(b)
    assert d == pytest.approx((a - b)[keep].mean()) and verdict == "better"
    assert sem == pytest.approx((a - b)[keep].std(ddof=1) / math.sqrt(39))
    assert ev.versus(a, b, higher_is_better=False)[2] == "worse"
    noisy = spread + np.where(np.arange(40) % 2, 1.0, -1.0)
    assert ev.versus(noisy, spread, True)[2] == "tie"
    assert ev.versus(a[:1], b[:1], True)[2] == "–"


def test_a_missing_baseline_library_fails_before_any_work(small_sim, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "captum.attr", None)    # import now raises ImportError
    assert ev.resolve_baselines(["gradient_x_input"]) == ["gradient_x_input"]
    for choice in ("all", ["ism", "integrated_gradients"]):
        with pytest.raises(PlrpError, match="integrated_gradients needs captum: pip install"):
            ev.resolve_baselines(choice)
    r = CliRunner().invoke(main, [
        "evaluate", "--fasta", str(small_sim / "sim.fa"), "--truth",
        str(small_sim / "sim.motifs.bed"), "--model", str(small_sim / "detector.safetensors"),
        "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 2 and "pip install captum" in r.output
    assert not (tmp_path / "o").exists()
