"""The MAC-level error study of PAC on one CiM column (PACiM's ``mac_noise_experiment``, extended).

Two Monte-Carlo experiments on a column of ``rows`` rows, for each (weight, input) bit-density pair:

1. AND-popcount (the anchor's notebook). Each trial takes a weight plane with exactly ``floor(d_w rows)``
   ones and an input plane with ``floor(d_x rows)`` ones at uniformly random positions and counts the rows
   where both are 1. The law of the count only depends on the relative positions, so the weight plane is
   fixed and the input plane is a uniformly random subset (Floyd's algorithm, vectorised over trials):
   the same law as shuffling both. Its mean is ``k_w k_x / rows`` (45.87, 127.98, 214.66 for the anchor's
   pairs at 1024 rows), which is exactly what PAC assumes.
2. Multi-bit MAC error. A trial draws a ``bits``-bit unsigned weight and input per row; every bit of every
   operand is an independent Bernoulli draw with probability ``floor(d 2^b) / 2^b`` (b = ceil(log2 rows),
   at least 8; so ``k/rows`` for 1024 rows, the plane density of experiment 1). The exact MAC is the sum
   of all ``bits^2`` AND-popcount cycles. PAC (operand p) computes the p x p MSB cycles exactly and every
   other cycle as ``popcount(w_i) popcount(x_j) / rows`` from the drawn planes; "drop LSB" computes the
   same p x p cycles and nothing else. Reported: bias, RMSE, and relative RMSE = RMSE / mean exact MAC.

Planes are packed 64 rows to a uint64 word; Bernoulli bits come from bit-sliced comparisons of raw random
words (b words per 64 bits), counts from ``np.bitwise_count``. Work goes in chunks of trials, so memory
stays bounded and a progress callback can follow. The multi-bit part draws 2 x bits planes per trial, so
it runs 20,000 trials by default (the RMSE to about 0.5%) next to the anchor's 100,000 AND-popcount trials.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_DENSITIES: tuple[tuple[float, float], ...] = ((0.30, 0.15), (0.50, 0.25), (0.70, 0.30))
CHUNK_TRIALS = 4096
CSV_COLUMNS = ("density_w", "density_x", "ones_w", "ones_x", "and_expected", "and_mean", "and_std", "and_min",
               "and_max", "mac_mean", "pac_bias", "pac_rmse", "pac_rel_rmse", "drop_bias", "drop_rmse",
               "drop_rel_rmse", "rmse_ratio")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class MacSettings:
    """What to run: column length, density pairs (weight, input), trials, bit width, PAC operand, seed."""

    rows: int = 1024
    densities: tuple[tuple[float, float], ...] = DEFAULT_DENSITIES
    trials: int = 100_000  # AND-popcount trials per pair
    bits: int = 8
    operand: int = 4
    seed: int = 0
    mac_trials: int | None = 20_000  # multi-bit MAC trials per pair (None: trials); RMSE to about 0.5%

    def __post_init__(self) -> None:
        if self.rows < 1 or self.trials < 1 or (self.mac_trials is not None and self.mac_trials < 1):
            raise ValueError(f"rows = {self.rows}, trials = {self.trials}, mac_trials = {self.mac_trials}: "
                             "must be >= 1")
        if not 1 <= self.operand <= self.bits <= 16:
            raise ValueError(f"operand = {self.operand}, bits = {self.bits}: need 1 <= operand <= bits <= 16")
        for pair in self.densities:
            if len(pair) != 2 or not all(0.0 <= d <= 1.0 for d in pair):
                raise ValueError(f"density pair {pair!r}: expected two fractions in [0, 1]")


@dataclass(frozen=True)
class PairResult:
    """Both experiments for one density pair."""

    density_w: float
    density_x: float
    ones_w: int
    ones_x: int
    and_expected: float
    and_mean: float
    and_std: float
    and_min: int
    and_max: int
    mac_mean: float
    pac_bias: float
    pac_rmse: float
    drop_bias: float
    drop_rmse: float
    histogram: dict[int, int] = field(default_factory=dict)  # AND-popcount -> trials

    @property
    def pac_rel_rmse(self) -> float:
        return self.pac_rmse / self.mac_mean if self.mac_mean else math.nan

    @property
    def drop_rel_rmse(self) -> float:
        return self.drop_rmse / self.mac_mean if self.mac_mean else math.nan

    @property
    def rmse_ratio(self) -> float:
        """How many times smaller the PAC error is than dropping the LSB cycles."""
        return self.drop_rmse / self.pac_rmse if self.pac_rmse else math.inf

    def to_dict(self) -> dict:
        d = asdict(self)
        d["histogram"] = {str(k): v for k, v in self.histogram.items()}
        d.update(pac_rel_rmse=self.pac_rel_rmse, drop_rel_rmse=self.drop_rel_rmse, rmse_ratio=self.rmse_ratio)
        return d


def ones_count(density: float, rows: int) -> int:
    """Ones of a plane of ``rows`` rows at a density: floor(density * rows), as the anchor."""
    return math.floor(density * rows + 1e-9)


def random_subsets(rng: np.random.Generator, count: int, n: int, k: int) -> np.ndarray:
    """``count`` uniformly random k-subsets of range(n) as a bool (count, n) array (Floyd's algorithm)."""
    flip = k > n // 2
    kk = n - k if flip else k
    chosen = np.zeros(count * n, dtype=bool)
    base = np.arange(count, dtype=np.int64) * n
    steps = np.arange(n - kk, n)
    picks = (rng.random((kk, count)) * (steps + 1)[:, None]).astype(np.int64) + base
    for step, j in enumerate(steps):  # pick t in [0, j]; if taken, take j (new at this step)
        pos = picks[step]
        np.copyto(pos, base + j, where=chosen[pos])
        chosen[pos] = True
    chosen = chosen.reshape(count, n)
    return ~chosen if flip else chosen


def bernoulli_words(rng: np.random.Generator, shape: tuple[int, ...], density: float, precision_bits: int
                    ) -> np.ndarray:
    """Packed independent bits, each 1 with probability ``floor(density 2^b) / 2^b``: uint64 words."""
    t = math.floor(density * 2**precision_bits + 1e-9)
    full = np.uint64(2**64 - 1)
    if t <= 0:
        return np.zeros(shape, np.uint64)
    if t >= 2**precision_bits:
        return np.full(shape, full)
    less = np.zeros(shape, np.uint64)  # r < t decided
    equal = np.full(shape, full)  # r == t so far (most significant bit first)
    lowest = (t & -t).bit_length() - 1  # below t's lowest one bit, r < t is already decided
    for b in range(precision_bits - 1, lowest - 1, -1):
        r = rng.bit_generator.random_raw(shape)  # one uniform random bit per row and word
        if (t >> b) & 1:  # less |= equal & ~r; equal &= r (in place)
            np.bitwise_and(r, equal, out=r)
            np.bitwise_xor(equal, r, out=equal)
            np.bitwise_or(less, equal, out=less)
            equal = r
        else:  # equal &= ~r
            np.bitwise_and(equal, np.invert(r, out=r), out=equal)
    return less


def and_popcounts(rng: np.random.Generator, rows: int, ones_w: int, ones_x: int, trials: int,
                  tick: Callable[[], None] | None = None) -> np.ndarray:
    """AND-popcounts of a fixed-count weight plane and a uniformly random fixed-count input plane (int64)."""
    out = np.empty(trials, dtype=np.int64)
    for s in range(0, trials, CHUNK_TRIALS):
        c = min(CHUNK_TRIALS, trials - s)
        x = random_subsets(rng, c, rows, ones_x)
        out[s : s + c] = x[:, :ones_w].sum(axis=1)  # the weight plane: the first ones_w rows
        if tick:
            tick()
    return out


def mac_errors(rng: np.random.Generator, rows: int, density_w: float, density_x: float, trials: int, bits: int,
               operand: int, tick: Callable[[], None] | None = None) -> dict[str, float]:
    """Mean exact MAC and the bias and RMSE of PAC and of dropping the LSB cycles over ``trials`` columns."""
    words = math.ceil(rows / 64)
    last = np.uint64(2 ** (rows - 64 * (words - 1)) - 1) if rows % 64 else np.uint64(2**64 - 1)
    precision = max(8, math.ceil(math.log2(rows)))
    place = 2.0 ** np.add.outer(np.arange(bits), np.arange(bits))  # [i, j] = 2^(i + j)
    msb = np.zeros((bits, bits), dtype=bool)
    msb[bits - operand :, bits - operand :] = True
    sums = dict.fromkeys(("mac", "pac", "pac2", "drop", "drop2"), 0.0)
    chunk = max(1, CHUNK_TRIALS // 4)
    for s in range(0, trials, chunk):
        c = min(chunk, trials - s)
        w = bernoulli_words(rng, (c, bits, words), density_w, precision)
        x = bernoulli_words(rng, (c, bits, words), density_x, precision)
        w[..., -1] &= last
        x[..., -1] &= last
        cycles = np.bitwise_count(w[:, :, None, :] & x[:, None, :, :]).sum(-1, dtype=np.int64)  # (c, W, X)
        cw = np.bitwise_count(w).sum(-1, dtype=np.int64).astype(np.float64)
        cx = np.bitwise_count(x).sum(-1, dtype=np.int64).astype(np.float64)
        exact = (cycles * place).sum(axis=(1, 2))
        kept = (cycles * (place * msb)).sum(axis=(1, 2))
        approx = np.einsum("ci,ij,cj->c", cw, place * ~msb, cx) / rows
        pac_err, drop_err = kept + approx - exact, kept - exact
        sums["mac"] += exact.sum()
        sums["pac"] += pac_err.sum()
        sums["pac2"] += (pac_err**2).sum()
        sums["drop"] += drop_err.sum()
        sums["drop2"] += (drop_err**2).sum()
        if tick:
            tick()
    n = float(trials)
    return {"mac_mean": sums["mac"] / n, "pac_bias": sums["pac"] / n, "pac_rmse": math.sqrt(sums["pac2"] / n),
            "drop_bias": sums["drop"] / n, "drop_rmse": math.sqrt(sums["drop2"] / n)}


def run_mac_experiment(settings: MacSettings = MacSettings(), progress: Progress | None = None  # noqa: B008
                       ) -> list[PairResult]:
    """Both experiments for every density pair, seeded: the same settings give the same numbers."""
    rng = np.random.default_rng(settings.seed)
    pairs = settings.densities
    mac_trials = settings.mac_trials or settings.trials
    steps = len(pairs) * (math.ceil(settings.trials / CHUNK_TRIALS) + math.ceil(mac_trials / (CHUNK_TRIALS // 4)))
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, steps)

    results = []
    for dw, dx in pairs:
        kw, kx = ones_count(dw, settings.rows), ones_count(dx, settings.rows)
        counts = and_popcounts(rng, settings.rows, kw, kx, settings.trials, tick)
        errors = mac_errors(rng, settings.rows, dw, dx, mac_trials, settings.bits, settings.operand, tick)
        values, freq = np.unique(counts, return_counts=True)
        results.append(PairResult(
            density_w=dw, density_x=dx, ones_w=kw, ones_x=kx, and_expected=kw * kx / settings.rows,
            and_mean=float(counts.mean()), and_std=float(counts.std()), and_min=int(counts.min()),
            and_max=int(counts.max()), histogram=dict(zip(values.tolist(), freq.tolist(), strict=True)), **errors))
    return results


def csv_text(results: Sequence[PairResult]) -> str:
    """One CSV row per density pair (:data:`CSV_COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.to_dict().items()})
    return buf.getvalue()


def figure(results: Sequence[PairResult], settings: MacSettings):
    """Plotly figure: AND-popcount histograms (left) and relative RMSE of PAC vs drop-LSB (right, log scale)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        f"AND-popcount of one {settings.rows}-row column ({settings.trials:,} trials)",
        f"{settings.bits}b x {settings.bits}b MAC, p = {settings.operand} ({settings.mac_trials or settings.trials:,} "
        "trials): RMSE / mean MAC"))
    labels = [f"S(w)={r.density_w:g}, S(x)={r.density_x:g}" for r in results]
    for label, r in zip(labels, results, strict=True):
        values = sorted(r.histogram)
        hover = (f"{label}<br>popcount %{{x}}: %{{y:.4f}} of trials<br>mean {r.and_mean:.2f} (PAC assumes "
                 f"{r.and_expected:.2f}), std {r.and_std:.2f}<extra></extra>")
        fig.add_trace(go.Bar(x=values, y=[r.histogram[v] / settings.trials for v in values], name=label,
                             opacity=0.7, offsetgroup="histogram", hovertemplate=hover), row=1, col=1)
    for name, key, colour in (("PAC", "pac_rel_rmse", "#1f77b4"), ("drop LSB", "drop_rel_rmse", "#d62728")):
        fig.add_trace(go.Bar(x=labels, y=[getattr(r, key) for r in results], name=name, marker_color=colour,
                             offsetgroup=name,
                             text=[f"{getattr(r, key):.3%}" for r in results], textposition="outside"),
                      row=1, col=2)
    fig.update_layout(barmode="group", bargap=0.0, title={"text": "PAC MAC-level error study", "x": 0.5}, height=520,
                      legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(title_text="AND-popcount", row=1, col=1)
    fig.update_yaxes(title_text="fraction of trials", row=1, col=1)
    fig.update_yaxes(title_text="RMSE / mean exact MAC", type="log", tickformat=".1%", row=1, col=2)
    return fig


def page_html(results: Sequence[PairResult], settings: MacSettings, notes: Sequence[str] = ()) -> str:
    """The whole mac_experiment.html page (plotly.js inlined, so it opens offline)."""
    body = figure(results, settings).to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    title = "PAC MAC-level error study"
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + title + "</title>"
            "<style>body{font-family:sans-serif;margin:20px;max-width:1300px} li{color:#333}</style></head><body>"
            + body + (f"<ul>{items}</ul>" if items else "") + "</body></html>\n")
