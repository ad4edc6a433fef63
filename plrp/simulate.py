"""Synthetic DNA with real transcription-factor motifs implanted at known positions.

Three kinds of data, all deterministic for a seed:

- :func:`simulate`: N labelled windows (e.g. 200 bp) for training and evaluating a
  classifier. Each *task* is an AND over motifs (the "grammar"): with the default
  :data:`DEFAULT_TASKS` task ``CTCF`` is positive when a CTCF instance was implanted,
  ``TP53`` when a TP53 instance was, and ``CTCF_AND_TP53`` only when both were, so a
  window holding one of them alone is a decoy negative for the AND task. Motifs that no
  task needs (``SPI1`` by default) are implanted as distractors that no label depends on.
- :func:`simulate_pair` (``plrp simulate --grammar pair``): a harder grammar with one task,
  positive iff the window holds motif A (CTCF) and motif B (TP53) on the same strand, B
  downstream of A reading that strand, with at most ``max_gap`` bp between them. Negatives
  include the same pair too far apart or flipped (wrong strand or order), one motif alone or
  none, so motif presence does not give the label; a distractor (SPI1) is implanted at the
  same rate in both classes. Label-carrying instances (the A and B of a positive pair) go to
  ``PREFIX.motifs.bed``, every other instance (distractors, decoy A / B) to
  ``PREFIX.ignored.bed``. :data:`GRAMMARS` maps ``--grammar`` names to these simulators.
- :func:`simulate_genome`: a few long "chromosomes" of background with motif *sites*
  (window-sized stretches built like the windows above) at random known positions, for
  tiling-based tests and benchmarks.

Every implanted instance is returned as a :class:`MotifInstance` (ground truth; 0-based,
half-open) and written by :func:`write_bed`. Motif instances are **sampled** from the
JASPAR position frequency matrices (each base drawn independently from its column's
frequencies, counts / column total, no pseudocount), not the consensus; each goes on a
random strand ('-' means the reverse complement of the sampled instance is written into the
sequence). Labels come from what was implanted; chance motif matches in the random
background are not counted (rare for these 15-18 bp, >= 16-bit motifs; see data/README.md).
The background is i.i.d. with a chosen GC content.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from plrp.atomic import AtomicGroup
from plrp.errors import InputError, PlrpError

ALPHABET = "ACGT"
MOTIF_DIR = Path(__file__).parent / "data" / "motifs"
JASPAR_RELEASE = "JASPAR2026"

#: task name -> motifs that must ALL be implanted for the task's label to be 1.
DEFAULT_TASKS: dict[str, tuple[str, ...]] = {
    "CTCF": ("CTCF",),
    "TP53": ("TP53",),
    "CTCF_AND_TP53": ("CTCF", "TP53"),
}
#: implanted without affecting any label (relevance on them is a false positive).
DEFAULT_DISTRACTORS: tuple[str, ...] = ("SPI1",)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_COMPLEMENT = np.array([3, 2, 1, 0], dtype=np.uint8)  # A<->T, C<->G on indices 0..3


@dataclass(frozen=True)
class Motif:
    """A position frequency matrix.

    ``counts`` has shape (4, W): rows A, C, G, T; W = motif width in bp.
    """

    name: str
    matrix_id: str
    jaspar_name: str
    counts: np.ndarray

    @property
    def width(self) -> int:
        return int(self.counts.shape[1])

    def frequencies(self) -> np.ndarray:
        """Column frequencies (4, W), each column summing to 1 (what instances are drawn from)."""
        return self.counts / self.counts.sum(axis=0, keepdims=True)

    def log_odds(self, pseudocount: float = 1.0) -> np.ndarray:
        """Log-odds matrix (4, W) in bits against a uniform background.

        ``pseudocount`` counts are spread evenly over the 4 bases of every column so that
        bases never seen in the matrix get a finite (very negative) score.
        """
        probs = (self.counts + pseudocount / 4) / (self.counts.sum(axis=0) + pseudocount)
        return np.log2(probs / 0.25)

    def score(self, sequence: str) -> float:
        """Log-odds score (bits) of a W-bp sequence read 5'->3' on the motif's strand."""
        if len(sequence) != self.width:
            raise PlrpError(f"motif {self.name}: sequence of {len(sequence)} bp, "
                            f"expected {self.width}")
        idx = encode(sequence)
        return float(self.log_odds()[idx, np.arange(self.width)].sum())

    def score_range(self) -> tuple[float, float]:
        """(lowest, highest) possible log-odds score in bits."""
        lo = self.log_odds()
        return float(lo.min(axis=0).sum()), float(lo.max(axis=0).sum())

    def relative_score(self, sequence: str) -> int:
        """BED score 0..1000: the log-odds score scaled linearly from its minimum to its maximum."""
        low, high = self.score_range()
        return int(round(1000 * (self.score(sequence) - low) / (high - low)))


@dataclass(frozen=True)
class MotifInstance:
    """One implanted motif: ``sequence[start:end]`` (0-based, half-open) on ``chrom``.

    ``instance`` is the sampled motif read on its own strand (for strand '-', the FASTA holds
    its reverse complement). ``score`` is the BED score (0..1000, see
    :meth:`Motif.relative_score`).
    """

    chrom: str
    start: int
    end: int
    motif: str
    score: int
    strand: str
    instance: str


@dataclass
class SimulatedData:
    """Simulated windows.

    ``sequences``: N strings over ACGT, all ``length`` bp; ``labels``: uint8 (N, T) with
    T = len(task_names); ``instances``: every implanted motif, sorted by window then start.
    For the pair grammar (:func:`simulate_pair`) ``instances`` holds only the motifs that carry
    a label and ``ignored`` the others (distractors and decoys), written to
    ``PREFIX.ignored.bed``; ``ignored`` is None for the default grammar.
    """

    names: list[str]
    sequences: list[str]
    task_names: list[str]
    labels: np.ndarray
    instances: list[MotifInstance]
    params: dict = field(default_factory=dict)
    ignored: list[MotifInstance] | None = None

    def one_hot(self) -> np.ndarray:
        """One-hot float32 array (N, 4, L), channels A, C, G, T."""
        return one_hot(self.sequences)


@dataclass
class SimulatedGenome:
    """Simulated chromosomes.

    ``sequences``: one string per chromosome (``length`` bp each); ``sites``: one row per motif
    site (chrom, start, end, labels dict task -> 0/1) in chromosome then start order;
    ``instances``: every implanted motif.
    """

    names: list[str]
    sequences: list[str]
    task_names: list[str]
    sites: list[tuple[str, int, int, dict[str, int]]]
    instances: list[MotifInstance]
    params: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# motifs

def read_jaspar(path: str | Path, name: str | None = None) -> Motif:
    """Read one matrix in JASPAR format (``>ID name`` then ``A [ c1 c2 ... ]`` for A, C, G, T)."""
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as err:
        raise InputError(f"{path}: cannot read motif file ({err.strerror})") from None
    if len(lines) != 5 or not lines[0].startswith(">"):
        raise InputError(f"{path}: expected a '>ID name' line and four rows A, C, G, T")
    header = lines[0][1:].split()
    rows = []
    for lineno, (base, line) in enumerate(zip(ALPHABET, lines[1:]), start=2):
        m = re.fullmatch(rf"{base}\s*\[([^\]]*)\]", line)
        try:
            values = [float(v) for v in m.group(1).split()] if m else None
        except ValueError:
            values = None
        if not values:
            raise InputError(f"{path}: line {lineno}: expected '{base} [ counts ... ]'")
        rows.append(values)
    if len({len(r) for r in rows}) != 1:
        raise InputError(f"{path}: rows A, C, G, T have different lengths")
    counts = np.array(rows, dtype=np.float64)
    if (counts < 0).any() or (counts.sum(axis=0) <= 0).any():
        raise InputError(f"{path}: counts must be >= 0 with a positive total in every column")
    return Motif(name=name or path.stem, matrix_id=header[0] if header else "",
                 jaspar_name=" ".join(header[1:]), counts=counts)


def load_motifs(names: Sequence[str] | None = None, motif_dir: str | Path | None = None
                ) -> dict[str, Motif]:
    """The shipped motifs (``plrp/data/motifs/<name>.jaspar``), by plrp name.

    ``names`` None loads all; an unknown name raises :class:`PlrpError`.
    """
    motif_dir = Path(motif_dir) if motif_dir else MOTIF_DIR
    available = {p.stem: p for p in sorted(motif_dir.glob("*.jaspar"))}
    names = list(available) if names is None else list(names)
    missing = [n for n in names if n not in available]
    if missing:
        raise PlrpError(f"unknown motif(s) {', '.join(missing)}; known: {', '.join(available)}")
    return {n: read_jaspar(available[n], n) for n in names}


# ---------------------------------------------------------------------------------------
# sequences

def encode(sequence: str) -> np.ndarray:
    """ACGT string -> uint8 indices (L,) with A=0, C=1, G=2, T=3 (other letters raise)."""
    lut = np.full(256, 255, dtype=np.uint8)
    for i, b in enumerate(ALPHABET):
        lut[ord(b)] = lut[ord(b.lower())] = i
    idx = lut[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
    if (idx == 255).any():
        raise PlrpError(f"sequence holds a letter other than ACGT at {int(np.argmax(idx == 255))}")
    return idx


def decode(indices: np.ndarray) -> str:
    """uint8 indices (L,) -> ACGT string."""
    return np.frombuffer(b"ACGT", dtype=np.uint8)[indices].tobytes().decode("ascii")


def reverse_complement(sequence: str) -> str:
    """Reverse complement of an ACGT string."""
    return decode(_COMPLEMENT[encode(sequence)][::-1])


def one_hot(sequences: Sequence[str]) -> np.ndarray:
    """Equal-length ACGT strings -> float32 one-hot (N, 4, L), channels A, C, G, T."""
    idx = np.stack([encode(s) for s in sequences])  # (N, L)
    out = np.zeros((idx.shape[0], 4, idx.shape[1]), dtype=np.float32)
    np.put_along_axis(out, idx[:, None, :], 1.0, axis=1)
    return out


def _background(rng: np.random.Generator, length: int, gc: float) -> np.ndarray:
    probs = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    return rng.choice(4, size=length, p=probs).astype(np.uint8)


def _sample_instance(rng: np.random.Generator, motif: Motif) -> np.ndarray:
    """Draw one instance (W,) base by base from the column frequencies."""
    cumulative = np.cumsum(motif.frequencies(), axis=0)  # (4, W)
    u = rng.random(motif.width)
    return np.minimum((u[None, :] >= cumulative).sum(axis=0), 3).astype(np.uint8)


def _implant(rng, seq: np.ndarray, offset: int, length: int, motif_names: list[str],
             motifs: Mapping[str, Motif], chrom: str, taken: list[tuple[int, int]]
             ) -> list[MotifInstance]:
    """Implant one instance of each motif in ``motif_names`` into ``seq[offset:offset+length]``.

    Positions are uniform among those not overlapping an instance already placed.
    """
    placed = []
    for name in motif_names:
        motif = motifs[name]
        if motif.width > length:
            raise PlrpError(f"motif {name} ({motif.width} bp) does not fit a {length} bp window")
        free = np.ones(length - motif.width + 1, dtype=bool)  # window-relative start positions
        for s, e in taken:
            free[max(0, s - offset - motif.width + 1):max(0, e - offset)] = False
        candidates = np.flatnonzero(free)
        if candidates.size == 0:
            raise PlrpError(f"cannot place {len(motif_names)} motifs without overlap in "
                            f"{length} bp; use longer windows or fewer copies")
        start = offset + int(candidates[rng.integers(0, candidates.size)])
        end = start + motif.width
        instance = _sample_instance(rng, motif)
        strand = "+" if rng.random() < 0.5 else "-"
        seq[start:end] = instance if strand == "+" else _COMPLEMENT[instance][::-1]
        text = decode(instance)
        taken.append((start, end))
        placed.append(MotifInstance(chrom, start, end, name, motif.relative_score(text),
                                    strand, text))
    return placed


def _check_grammar(tasks: Mapping[str, Sequence[str]], distractors: Sequence[str],
                   motifs: Mapping[str, Motif] | None) -> tuple[dict, list, dict, list[str]]:
    tasks = {str(t): tuple(m) for t, m in tasks.items()}
    if not tasks:
        raise PlrpError("at least one task is needed")
    for t, needed in tasks.items():
        if not _NAME_RE.match(t):
            raise PlrpError(f"task name {t!r} must match [A-Za-z0-9_.-]+")
        if not needed:
            raise PlrpError(f"task {t} needs at least one motif")
    task_motifs = list(dict.fromkeys(m for needed in tasks.values() for m in needed))
    distractors = [d for d in distractors if d not in task_motifs]
    if motifs is None:
        motifs = load_motifs(task_motifs + distractors)
    missing = [m for m in task_motifs + distractors if m not in motifs]
    if missing:
        raise PlrpError(f"no matrix for motif(s) {', '.join(missing)}")
    return tasks, distractors, dict(motifs), task_motifs


def _draw_window(rng, seq, offset, length, chrom, motifs, task_motifs, distractors, tasks,
                 motif_rate, distractor_rate, max_copies, require_motif=False):
    """Choose which motifs a window holds, implant them, and return (instances, labels)."""
    while True:
        present = [m for m in task_motifs if rng.random() < motif_rate]
        present += [d for d in distractors if rng.random() < distractor_rate]
        if present or not require_motif:
            break
    copies = [m for m in present for _ in range(int(rng.integers(1, max_copies + 1)))]
    order = [copies[i] for i in rng.permutation(len(copies))]
    placed = _implant(rng, seq, offset, length, order, motifs, chrom, [])
    labels = {t: int(all(m in present for m in needed)) for t, needed in tasks.items()}
    return sorted(placed, key=lambda p: (p.start, p.motif)), labels


def _common_params(gc, motif_rate, distractor_rate, max_copies):
    if not 0.0 < gc < 1.0:
        raise PlrpError(f"--gc must be in (0, 1), got {gc}")
    for name, rate in (("motif rate", motif_rate), ("distractor rate", distractor_rate)):
        if not 0.0 <= rate <= 1.0:
            raise PlrpError(f"{name} must be in [0, 1], got {rate}")
    if max_copies < 1:
        raise PlrpError(f"max copies must be >= 1, got {max_copies}")


def simulate(n: int, length: int = 200, seed: int = 0, *,
             tasks: Mapping[str, Sequence[str]] = DEFAULT_TASKS,
             distractors: Sequence[str] = DEFAULT_DISTRACTORS, motif_rate: float = 0.5,
             distractor_rate: float = 0.3, max_copies: int = 1, gc: float = 0.5,
             motifs: Mapping[str, Motif] | None = None, name_prefix: str = "win"
             ) -> SimulatedData:
    """Simulate ``n`` labelled windows of ``length`` bp.

    Each motif some task needs is implanted independently with probability ``motif_rate``
    (1..``max_copies`` copies, uniform), each distractor with ``distractor_rate``; copies
    never overlap. Label of task t = 1 iff every motif in ``tasks[t]`` was implanted.
    ``gc`` is the background GC fraction. ``motifs`` defaults to the shipped matrices.
    Same arguments and seed => identical output (numpy PCG64 generator).

    Returns :class:`SimulatedData` with names ``<name_prefix>000000``..., labels (n, T) uint8.
    """
    if n < 1 or length < 1:
        raise PlrpError(f"need n >= 1 and length >= 1, got n={n}, length={length}")
    _common_params(gc, motif_rate, distractor_rate, max_copies)
    tasks, distractors, motifs, task_motifs = _check_grammar(tasks, distractors, motifs)
    rng = np.random.default_rng(seed)
    width = max(6, len(str(n - 1)))
    names, sequences, labels, instances = [], [], [], []
    for i in range(n):
        name = f"{name_prefix}{i:0{width}d}"
        seq = _background(rng, length, gc)
        placed, window_labels = _draw_window(rng, seq, 0, length, name, motifs, task_motifs,
                                             distractors, tasks, motif_rate, distractor_rate,
                                             max_copies)
        names.append(name)
        sequences.append(decode(seq))
        labels.append([window_labels[t] for t in tasks])
        instances.extend(placed)
    params = dict(kind="windows", n=n, length=length, seed=seed, gc=gc, motif_rate=motif_rate,
                  distractor_rate=distractor_rate, max_copies=max_copies,
                  tasks={t: list(m) for t, m in tasks.items()}, distractors=list(distractors),
                  motifs=_motif_record(motifs, task_motifs + list(distractors)))
    return SimulatedData(names, sequences, list(tasks), np.array(labels, dtype=np.uint8),
                         instances, params)


def simulate_genome(n_chroms: int, length: int, seed: int = 0, *, site_length: int = 200,
                    site_spacing: int = 1000, tasks: Mapping[str, Sequence[str]] = DEFAULT_TASKS,
                    distractors: Sequence[str] = DEFAULT_DISTRACTORS, motif_rate: float = 0.5,
                    distractor_rate: float = 0.3, max_copies: int = 1, gc: float = 0.5,
                    motifs: Mapping[str, Motif] | None = None, name_prefix: str = "chr"
                    ) -> SimulatedGenome:
    """Simulate ``n_chroms`` chromosomes of ``length`` bp with motif sites at known positions.

    Sites are ``site_length`` bp stretches, one starting every ``site_spacing`` bp on average
    (gaps uniform in [spacing/2, 3*spacing/2] bp, first site after half a gap). Each site is
    filled like a :func:`simulate` window but always holds at least one motif; its task labels
    describe a ``site_length`` window covering exactly the site.
    Chromosomes are named ``<name_prefix>1``...
    """
    if n_chroms < 1 or length < site_length:
        raise PlrpError(f"need n_chroms >= 1 and length >= site length {site_length}, "
                        f"got {n_chroms} x {length}")
    if site_spacing < 2:
        raise PlrpError(f"site spacing must be >= 2 bp, got {site_spacing}")
    _common_params(gc, motif_rate, distractor_rate, max_copies)
    tasks, distractors, motifs, task_motifs = _check_grammar(tasks, distractors, motifs)
    rng = np.random.default_rng(seed)
    names, sequences, sites, instances = [], [], [], []
    for c in range(n_chroms):
        name = f"{name_prefix}{c + 1}"
        seq = _background(rng, length, gc)
        pos = int(rng.integers(site_spacing // 4, 3 * site_spacing // 4 + 1))
        while pos + site_length <= length:
            placed, labels = _draw_window(rng, seq, pos, site_length, name, motifs, task_motifs,
                                          distractors, tasks, motif_rate, distractor_rate,
                                          max_copies, require_motif=True)
            sites.append((name, pos, pos + site_length, labels))
            instances.extend(placed)
            pos += site_length + int(rng.integers(site_spacing // 2, 3 * site_spacing // 2 + 1))
        names.append(name)
        sequences.append(decode(seq))
    params = dict(kind="genome", n_chroms=n_chroms, length=length, seed=seed, gc=gc,
                  site_length=site_length, site_spacing=site_spacing, motif_rate=motif_rate,
                  distractor_rate=distractor_rate, max_copies=max_copies,
                  tasks={t: list(m) for t, m in tasks.items()}, distractors=list(distractors),
                  motifs=_motif_record(motifs, task_motifs + list(distractors)))
    return SimulatedGenome(names, sequences, list(tasks), sites, instances, params)


# ---------------------------------------------------------------------------------------
# the pair grammar: a motif pair at a constrained spacing and orientation

#: window kinds of the pair grammar. "pair": B on A's strand, downstream of A (reading A's
#: strand), gap 0..max_gap bp, the one positive kind; "far": the same arrangement, gap >
#: max_gap; "flipped": gap 0..max_gap but B on the other strand and/or upstream of A;
#: "A_only" / "B_only": one of the two motifs; "none": neither.
PAIR_NEGATIVE_KINDS: tuple[str, ...] = ("far", "flipped", "A_only", "B_only", "none")


def pair_is_positive(a: MotifInstance, b: MotifInstance, max_gap: int) -> bool:
    """The pair rule: ``b`` on ``a``'s strand, downstream of ``a`` reading that strand, with
    0..``max_gap`` bp between them. Invariant under reverse complementing the window."""
    if a.chrom != b.chrom or a.strand != b.strand:
        return False
    gap = b.start - a.end if a.strand == "+" else a.start - b.end
    return 0 <= gap <= max_gap


def _place_pair(rng, seq, chrom, a: Motif, b: Motif, gap: int, a_strand: str, b_strand: str,
                b_downstream: bool) -> list[MotifInstance]:
    """Implant A and B ``gap`` bp apart, B downstream (or upstream) of A reading A's strand.

    The pair's start is uniform over the window.
    """
    b_after_a = b_downstream == (a_strand == "+")   # in window coordinates
    first, second = ((a, a_strand), (b, b_strand)) if b_after_a else ((b, b_strand), (a, a_strand))
    span = first[0].width + gap + second[0].width
    start = int(rng.integers(0, len(seq) - span + 1))
    placed = []
    for (motif, strand), begin in ((first, start), (second, start + first[0].width + gap)):
        instance = _sample_instance(rng, motif)
        seq[begin:begin + motif.width] = instance if strand == "+" else _COMPLEMENT[instance][::-1]
        text = decode(instance)
        placed.append(MotifInstance(chrom, begin, begin + motif.width, motif.name,
                                    motif.relative_score(text), strand, text))
    return placed


def _draw_pair_window(rng, seq, chrom, kind, a, b, max_gap):
    """Implant the motifs of one window of ``kind``; returns the instances in window order."""
    length, flip = len(seq), lambda s: "-" if s == "+" else "+"
    a_strand = "+" if rng.random() < 0.5 else "-"
    if kind == "pair":
        gap = int(rng.integers(0, max_gap + 1))
        return _place_pair(rng, seq, chrom, a, b, gap, a_strand, a_strand, True)
    if kind == "far":
        gap = int(rng.integers(max_gap + 1, length - a.width - b.width + 1))
        return _place_pair(rng, seq, chrom, a, b, gap, a_strand, a_strand, True)
    if kind == "flipped":
        gap = int(rng.integers(0, max_gap + 1))
        other_strand, downstream = [(True, True), (False, False), (True, False)][rng.integers(3)]
        b_strand = flip(a_strand) if other_strand else a_strand
        return _place_pair(rng, seq, chrom, a, b, gap, a_strand, b_strand, downstream)
    single = {"A_only": [a.name], "B_only": [b.name], "none": []}[kind]
    return _implant(rng, seq, 0, length, single, {a.name: a, b.name: b}, chrom, [])


def simulate_pair(n: int, length: int = 200, seed: int = 0, *,
                  pair: Sequence[str] = ("CTCF", "TP53"), max_gap: int = 20,
                  positive_rate: float = 0.5, distractors: Sequence[str] = DEFAULT_DISTRACTORS,
                  distractor_rate: float = 0.3, gc: float = 0.5, motifs: Mapping[str, Motif] | None = None,
                  task_name: str | None = None, name_prefix: str = "win") -> SimulatedData:
    """Simulate ``n`` windows labelled by a motif pair at a constrained spacing and orientation.

    With ``pair`` = (A, B), the single task (``task_name``, default ``A_B_PAIR``) is 1 iff the
    window holds an A and a B on the same strand, B downstream of A reading that strand, with
    0..``max_gap`` bp between them (:func:`pair_is_positive`). A window is of kind "pair" with
    probability ``positive_rate``, else of one of :data:`PAIR_NEGATIVE_KINDS` (uniform): the
    same pair too far apart, flipped (wrong strand or order), A alone, B alone, or neither, so
    the presence of the motifs alone does not give the label. Independently of the kind, each
    distractor is implanted with probability ``distractor_rate``; no label depends on it.
    Labels are recomputed from the implanted instances by the rule.

    ``instances`` holds the label-carrying motifs (the A and B of a positive pair);
    ``ignored`` the rest (distractors and decoy A / B). Same arguments and seed => identical
    output. Returns :class:`SimulatedData` with labels (n, 1) uint8.
    """
    if n < 1 or length < 1:
        raise PlrpError(f"need n >= 1 and length >= 1, got n={n}, length={length}")
    _common_params(gc, 0.0, distractor_rate, 1)
    if not 0.0 <= positive_rate <= 1.0:
        raise PlrpError(f"positive rate must be in [0, 1], got {positive_rate}")
    if len(pair) != 2 or pair[0] == pair[1]:
        raise PlrpError(f"--pair expects two different motifs A,B, got {','.join(pair)}")
    task_name = task_name or f"{pair[0]}_{pair[1]}_PAIR"
    tasks, distractors, motifs, _ = _check_grammar({task_name: tuple(pair)}, distractors, motifs)
    a, b = motifs[pair[0]], motifs[pair[1]]
    if max_gap < 0 or a.width + b.width + max_gap + 1 > length:
        raise PlrpError(f"max gap {max_gap} bp: needs 0 <= gap and a {length} bp window longer "
                        f"than {pair[0]} + {pair[1]} + gap ({a.width + b.width + max_gap} bp), "
                        "so that pairs too far apart fit as decoys")
    rng = np.random.default_rng(seed)
    width = max(6, len(str(n - 1)))
    names, sequences, labels, carrying, ignored = [], [], [], [], []
    for i in range(n):
        name = f"{name_prefix}{i:0{width}d}"
        seq = _background(rng, length, gc)
        kind = ("pair" if rng.random() < positive_rate
                else PAIR_NEGATIVE_KINDS[rng.integers(len(PAIR_NEGATIVE_KINDS))])
        placed = _draw_pair_window(rng, seq, name, kind, a, b, max_gap)
        present = [d for d in distractors if rng.random() < distractor_rate]
        placed += _implant(rng, seq, 0, length, present, motifs, name,
                           [(p.start, p.end) for p in placed])
        in_pair = {(x, y) for x in placed for y in placed if x.motif == a.name
                   and y.motif == b.name and pair_is_positive(x, y, max_gap)}
        members = {id(m) for xy in in_pair for m in xy}
        for inst in sorted(placed, key=lambda p: (p.start, p.motif)):
            (carrying if id(inst) in members else ignored).append(inst)
        names.append(name)
        sequences.append(decode(seq))
        labels.append([int(bool(in_pair))])
    params = dict(kind="windows", grammar="pair", n=n, length=length, seed=seed, gc=gc,
                  pair=list(pair), max_gap=max_gap, positive_rate=positive_rate,
                  negative_kinds=list(PAIR_NEGATIVE_KINDS), distractor_rate=distractor_rate,
                  tasks={t: list(m) for t, m in tasks.items()}, distractors=list(distractors),
                  motifs=_motif_record(motifs, list(pair) + list(distractors)))
    return SimulatedData(names, sequences, [task_name], np.array(labels, dtype=np.uint8),
                         carrying, params, ignored)


#: grammar name -> window simulator ``f(n, length, seed=..., gc=..., distractors=...,
#: distractor_rate=..., **grammar options) -> SimulatedData`` (``plrp simulate --grammar``)
GRAMMARS = {"and": simulate, "pair": simulate_pair}


def _motif_record(motifs: Mapping[str, Motif], names: Sequence[str]) -> dict:
    return {n: {"jaspar_id": motifs[n].matrix_id, "jaspar_name": motifs[n].jaspar_name,
                "width": motifs[n].width,
                "release": JASPAR_RELEASE if motifs[n].matrix_id else ""} for n in names}


# ---------------------------------------------------------------------------------------
# writers (plain functions on paths; callers wanting all-or-nothing use write_outputs)

def write_fasta(path: str | Path, names: Sequence[str], sequences: Sequence[str],
                line_width: int = 60) -> None:
    """Write records ``>name`` with the sequence wrapped at ``line_width`` characters."""
    with open(path, "w") as fh:
        for name, seq in zip(names, sequences, strict=True):
            fh.write(f">{name}\n")
            for i in range(0, len(seq), line_width):
                fh.write(seq[i:i + line_width] + "\n")


def write_labels(path: str | Path, names: Sequence[str], task_names: Sequence[str],
                 labels: np.ndarray) -> None:
    """Write a TSV: header ``name<TAB>task1...``, then one row per window with 0/1 values."""
    labels = np.asarray(labels)
    with open(path, "w") as fh:
        fh.write("\t".join(["name", *task_names]) + "\n")
        for name, row in zip(names, labels, strict=True):
            fh.write("\t".join([name, *(str(int(v)) for v in row)]) + "\n")


def write_bed(path: str | Path, instances: Sequence[MotifInstance]) -> None:
    """Write BED6 (chrom, start, end, motif, score 0..1000, strand), 0-based half-open."""
    with open(path, "w") as fh:
        for m in instances:
            fh.write(f"{m.chrom}\t{m.start}\t{m.end}\t{m.motif}\t{m.score}\t{m.strand}\n")


def write_sites(path: str | Path, genome: SimulatedGenome) -> None:
    """Write a TSV of genome sites: ``chrom start end <task labels...>`` (0-based half-open)."""
    with open(path, "w") as fh:
        fh.write("\t".join(["chrom", "start", "end", *genome.task_names]) + "\n")
        for chrom, start, end, labels in genome.sites:
            fh.write("\t".join([chrom, str(start), str(end),
                                *(str(labels[t]) for t in genome.task_names)]) + "\n")


def write_outputs(prefix: str | Path, data: SimulatedData | SimulatedGenome) -> list[Path]:
    """Write all files of a simulation together (none appear if any write fails).

    Windows: ``PREFIX.fa``, ``PREFIX.labels.tsv``, ``PREFIX.motifs.bed``,
    ``PREFIX.simulation.json``, and ``PREFIX.ignored.bed`` when ``data.ignored`` is set (pair
    grammar); genome: ``.labels.tsv`` is replaced by ``PREFIX.sites.tsv``.
    Returns the paths written.
    """
    prefix = str(prefix)
    targets = {"fasta": Path(prefix + ".fa"), "bed": Path(prefix + ".motifs.bed"),
               "json": Path(prefix + ".simulation.json")}
    if isinstance(data, SimulatedGenome):
        targets["sites"] = Path(prefix + ".sites.tsv")
    else:
        targets["labels"] = Path(prefix + ".labels.tsv")
        if data.ignored is not None:
            targets["ignored"] = Path(prefix + ".ignored.bed")
    with AtomicGroup() as group:
        tmp = {k: group.path(p) for k, p in targets.items()}
        write_fasta(tmp["fasta"], data.names, data.sequences)
        write_bed(tmp["bed"], data.instances)
        if "sites" in tmp:
            write_sites(tmp["sites"], data)
        else:
            write_labels(tmp["labels"], data.names, data.task_names, data.labels)
        if "ignored" in tmp:
            write_bed(tmp["ignored"], data.ignored)
        tmp["json"].write_text(json.dumps(data.params, indent=2) + "\n")
        group.commit()
    return list(targets.values())
