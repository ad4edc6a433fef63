"""``plrp evaluate``: LRP and PLRP (against p) and the baselines of :mod:`plrp.baselines`,
scored on windows with known motifs."""

from __future__ import annotations

import click

from plrp.errors import PlrpError


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PlrpError(f"{flag} {text!r}: expected comma-separated numbers, "
                        "e.g. 0,0.1,0.2") from None


def _names(text: str | None) -> list[str] | None:
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


class BaselinesOption(click.Option):
    """--baselines, whose help lists the registered baselines (plrp.baselines.BASELINES),
    read only when help is shown so that importing the command stays light."""

    def get_help_record(self, ctx):
        from plrp.baselines import BASELINES

        self.help = ("Baselines scored beside LRP/PLRP, comma-separated, with their default "
                     "options: all, none, or any of "
                     + ", ".join(f"{name} ({b.library}; {b.cost} per window)"
                                 for name, b in BASELINES.items()) + ".")
        return super().get_help_record(ctx)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--fasta", required=True, type=click.Path(dir_okay=False),
              help="Windows of the model's input length (as `plrp simulate` writes them) or "
                   "longer sequences, tiled with the model's window.")
@click.option("--truth", required=True, type=click.Path(dir_okay=False),
              help="Ground truth BED: chrom start end motif (0-based half-open).")
@click.option("--model", default=None, type=click.Path(dir_okay=False),
              help="Checkpoint (default: the shipped model).")
@click.option("--arch", default=None, help="Architecture of a plain state_dict checkpoint.")
@click.option("--target", "targets", default=None,
              help="Output(s) to explain, comma-separated (default: the model's first output).")
@click.option("--motifs", default=None,
              help="BED motif names that are the target's ground truth, comma-separated "
                   "(default: the target's name, or the parts of an A_AND_B task).")
@click.option("--p", "p_text", default="0,0.05,0.1,0.2,0.3,0.5,0.7", show_default=True,
              help="p_pos values (p_neg = p_pos / 2); p = 0 is plain LRP.")
@click.option("--variant", "variant_text", default="lambda,m", show_default=True,
              help="PLRP variants to compare: lambda, m.")
@click.option("--sparsity", "sparsity_text", default="", metavar="F,F,...",
              help="Also score each PLRP setting's sparse per-base track (plrp explain "
                   "--sparsity F) at these fractions, against the unsparsified track.")
@click.option("--baselines", "baselines_text", cls=BaselinesOption, default="all",
              show_default=True, metavar="all|none|NAME,...")
@click.option("--compare-p", "compare_p_text", default="", metavar="P,P,...",
              help="p values (among --p) at which PLRP-lambda is set against LRP and the "
                   "baselines in the report and the methods figure [plrp's default p_pos].")
@click.option("--ignored", default=None, type=click.Path(dir_okay=False),
              help="BED of motif instances the label ignores (plrp simulate --grammar pair "
                   "writes PREFIX.ignored.bed): the share of positive relevance on them is "
                   "reported per motif name (lower is better).")
@click.option("--windows", "selection", default="truth", show_default=True,
              type=click.Choice(["truth", "positive", "predicted", "all"]),
              help="Which windows to explain: holding a complete instance of any of the "
                   "target's motifs (truth), of all of them (positive: the label), with a "
                   "score > 0 (predicted), or all (RMA/RRA then use windows with truth only).")
@click.option("--composite", default="epsilon", show_default=True, help="Rule composite.")
@click.option("--morf-steps", default=20, show_default=True, type=int,
              help="MoRF perturbation steps.")
@click.option("--morf-step-size", default=2, show_default=True, type=int,
              help="Positions replaced by N per MoRF step.")
@click.option("--max-windows", default=None, type=int, help="Use at most N selected windows.")
@click.option("--batch-size", default=128, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the MoRF tie-break order.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", default=None, type=int,
              help="torch CPU threads [torch's default]; 1 keeps timings steady on a busy "
                   "machine.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: metrics.tsv, metrics.json, metrics_vs_p.<target>.png, "
                   "morf.<target>.png, methods.<target>.png (with baselines).")
@click.option("--report", default=None, type=click.Path(dir_okay=False),
              help="Markdown file whose generated results block (between the "
                   "'<!-- evaluate:begin -->' and '<!-- evaluate:end -->' markers) is replaced.")
@click.option("--report-section", default="", metavar="NAME",
              help="Use the markers '<!-- evaluate:begin NAME -->' / '<!-- evaluate:end NAME -->' "
                   "(several generated blocks in one report).")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def evaluate(fasta, truth, model, arch, targets, motifs, p_text, variant_text, sparsity_text,
             baselines_text, compare_p_text, ignored, selection, composite, morf_steps,
             morf_step_size, max_windows, batch_size, seed, device, threads, out_dir, report,
             report_section, quiet) -> None:
    """Measure sparsity, localisation, faithfulness and cost of LRP, PLRP against p, and the
    baselines (gradient x input, ISM, DeepLIFT-SHAP, integrated gradients: see --baselines).

    Per window, averaged (mean and standard error): Gini of |relevance|; relevance mass and
    rank accuracy against the truth BED; MoRF AOPC (the most relevant positions replaced by
    all-zero "N" columns, --morf-step-size at a time; AOPC = mean over the steps of
    f(x) - f(x_k), in logits); relevance on --ignored motifs; conservation error (LRP/PLRP);
    explanation time per window. See docs/evaluation.md.
    """
    from plrp.evaluate import run_evaluation, update_report, write_evaluation

    if morf_steps < 1 or morf_step_size < 1:
        raise PlrpError("--morf-steps and --morf-step-size must be >= 1")
    if max_windows is not None and max_windows < 1:
        raise PlrpError("--max-windows must be >= 1")
    if threads is not None and threads < 1:
        raise PlrpError("--threads must be >= 1")
    result = run_evaluation(
        fasta, truth, model=model, arch=arch, targets=_names(targets),
        p_values=_floats(p_text, "--p"), variants=_names(variant_text) or [],
        motifs=_names(motifs), selection=selection, composite=composite, n_steps=morf_steps,
        step_size=morf_step_size, max_windows=max_windows, batch_size=batch_size, seed=seed,
        device=device, sparsities=_floats(sparsity_text, "--sparsity"),
        baselines=_names(baselines_text) or [], ignored_bed=ignored, threads=threads,
        compare_p=_floats(compare_p_text, "--compare-p"),
        progress=not quiet)
    paths = write_evaluation(result, out_dir)
    if report:
        update_report(result, report, out_dir, report_section)
        paths.append(report)
    if not quiet:
        click.echo(f"plrp evaluate: wrote {', '.join(str(p) for p in paths)}", err=True)
