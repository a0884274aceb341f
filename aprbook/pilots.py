"""Pilot runs for the slow learning on the synthetic task (issue 13): short streamed runs that
change one factor at a time against the book's setting, several seeds each.

Every network of the streamed chapter, APR and pixel alike, learns several times more slowly
than the thesis reports. The pilots test the candidate causes that the thesis leaves open (how
intensities reach the network, the pixel networks' zero padding, the generator's unstated ranges,
the learning rate), each on APR_B at 256x256 and on Pix_B on images bilinearly downsampled to 64x64
(the cheap pixel proxy; its error at convergence is higher, its speed of learning is what is
compared). A pilot is a :func:`aprlib.train.train_streamed` run of ``n_batches`` batches; it is
stored on its own under ``results/pilots/<pilot id>/<profile>/`` (table ``metrics``) and
summarised by :func:`pilot_summary` into ``results/pilots/<profile>/pilot_summary.csv``.

Decision rule, written down before any pilot had finished (what becomes the book's setting):

1. A pilot that reveals a defect (a bug in our code, labels that do not match their images, a
   generator that contradicts the thesis's text) gets the defect fixed, everywhere, and every
   chapter that used it is recomputed.
2. A choice the thesis leaves open follows its text and common practice, fixed here in advance:
   - intensities: standardised with the statistics of the intensity distribution the thesis
     states (uniform in [0, 1]: ``(x - 0.5) / sqrt(1/12)``), as a fixed per-dataset map is the
     common practice (torchvision's ``Normalize``); it changes no information and no APR
     structure. Per-image standardisation is not adopted whatever its pilot shows: it removes
     each image's contrast, a property of the task the thesis defines;
   - padding: zeros, as the thesis describes for both pixel and APR convolutions (2.2, 3.2);
   - the generator: our ranges (``GeneratorParams.default()``) unless they contradict the text;
     no range is set to match a thesis number;
   - the learning rate is the thesis's (5e-4); batch norm and initialisation PyTorch's defaults.
3. Whatever the pilots show, the chapter shows every factor's effect (the sensitivity), and a
   factor that explains the slow learning but is not adopted is named as the explanation.

Command line: ``python -m aprbook.pilots --profile book [PILOT_ID ...]`` computes the missing pilots
(those named, in the order named, else all); ``--factor NAME`` (repeatable) adds every pilot of a
factor; ``--list`` prints the ids.

Pilots of the remaining gap (issue 39, item 5). Per-image standardisation leaves APR_B at about
0.80 after 300 batches, where the thesis's B networks are "virtually perfect after a few hundred
batches" (4.1.3.2). Four more factors test how the thesis-era code (pyapr's ``APRNet`` and MNIST
demo, 2019, by the thesis's author) differed from ours where the thesis's text leaves room: batch
norm over zero-padded particle batches (``bn_padded``), the order conv -> pool -> ReLU -> BN
(``order_pool_relu_bn``), the global average over the padded particle axis (``avg_padded``) and
class scores normalised twice (``softmax_ce``); see :data:`FACTORS` for each one's quote.

Effect rule of the gap pilots (the rank rule), written down, with its false-positive rate, before
any run of those four factors and before the baseline's third seed:

- Each of those factors and the baseline runs seeds 1, 2 and 3 (profile ``pilots``,
  ``extra_seeds``); a pilot is read by ``acc_last``, its mean accuracy over the last 100 of its 300
  batches (:func:`pilot_summary`).
- Per network, a factor *speeds up* learning if all three of its seeds' ``acc_last`` exceed all
  three of the baseline's, *slows down* if all three fall below all three of the baseline's, and
  has *no clear effect* otherwise (a tie across the two sides included); with fewer than three
  seeds on either side it is *untested* (:func:`rank_effects`).
- False-positive rate: with no effect, the six values are exchangeable, so each of the
  C(6, 3) = 20 ways of splitting them into the factor's three and the baseline's three is equally
  likely, and exactly one puts the factor's three above: the rule says *speeds up* with probability
  1/20 = 0.05 exactly, *slows down* with 1/20, an effect in either direction with 1/10
  (:func:`rank_rule_false_positive_rate`), whatever the distribution of the seed noise. A factor
  and the baseline share each seed's initialisation seed and data stream, which correlates their
  values seed by seed; that lowers the rate (simulated with normal noise, 400000 draws per case:
  0.073 for either direction when a quarter of the variance is shared by seed, 0.047 with half,
  0.023 with three quarters, against 0.100 with none; :func:`simulated_false_positive_rate`). Over
  the 6 comparisons of the four factors (two on both networks, two on APR_B only), at most about
  0.6 false effects are expected when none of them has an effect.
- The first rule (the range rule of :func:`factor_effects`: a change of the two-seed means beyond
  the larger two-seed range) says *speeds up* or *slows down* with probability 0.216 when there is
  no effect (0.108 per direction; independent normal seed noise, any scale: simulated, 400000
  draws; 0.14 when half the variance is shared by seed). Its readings are kept as they were, on
  seeds 1 and 2 (:data:`RANGE_RULE_SEEDS`), labelled with that rate.
- The rank rule decides what the chapter calls an effect of the four factors; the range rule's
  readings of them are shown beside it, labelled. No factor's result changes the book's setting:
  these are explanations of the gap, not settings (rule 2 above).
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import torch

from aprlib.train import InputSpec, train_streamed

from .provenance import ResultStore

__all__ = ["FACTORS", "PILOT_NETWORKS", "pilot_runs", "run_pilot", "pilot_store", "compute_pilot", "pilot_summary",
           "factor_table", "pilot_figure", "factor_effects", "DECISION_RULE", "RANK_RULE", "RANGE_RULE_SEEDS",
           "RANK_RULE_SEEDS", "range_rule", "rank_rule", "rank_effects", "rank_rule_false_positive_rate",
           "simulated_false_positive_rate"]

PILOT_NOTEBOOK = "notebooks/05a_pilots.ipynb"

#: The decision rule of the module docstring (written before any pilot finished), for the chapter.
DECISION_RULE = __doc__[__doc__.index("1. A pilot"):__doc__.index("Command line")].strip()

#: The rank rule of the module docstring (written before any run of the factors it judges), for the chapter.
RANK_RULE = __doc__[__doc__.index("Effect rule of the gap pilots"):].strip()

#: The seeds the range rule (:func:`factor_table`, :func:`factor_effects`) reads: the two it was
#: applied to, so that its readings stay as they were when more seeds are stored.
RANGE_RULE_SEEDS = (1, 2)

#: The seeds the rank rule (:func:`rank_effects`) reads, three on each side.
RANK_RULE_SEEDS = (1, 2, 3)

#: The networks of the pilots: (family, variant, input kind, pixel resolution or None).
PILOT_NETWORKS = {"APR_B": ("B", "full", "apr", None), "Pix_B_px64": ("B", "pixel", "pixel", 64)}

#: One factor changed at a time against the book's setting (``baseline``). Each entry: what it
#: tests, the networks it applies to, and the change: ``input`` (InputSpec fields), ``generator``
#: (GeneratorParams fields), ``network`` (network keyword arguments), ``lr`` or ``output``
#: ("softmax": the network's logits go through a softmax before the loss's own); the factors of the
#: remaining gap (issue 39) also quote the thesis's text they rest on (``thesis``).
FACTORS = {
    "baseline": {"tests": "the book's setting", "networks": list(PILOT_NETWORKS)},
    "norm_dataset": {"tests": "inputs standardised by the intensity distribution's mean and sd (one affine map)",
                     "networks": list(PILOT_NETWORKS), "input": {"normalise": "dataset"}},
    "norm_image": {"tests": "each image standardised by its own mean and sd", "networks": list(PILOT_NETWORKS),
                   "input": {"normalise": "image"}},
    "pad_replicate": {"tests": "pixel networks pad by replication instead of zeros (no artificial frame)",
                      "networks": ["Pix_B_px64"], "network": {"padding_mode": "replicate"}},
    "contrast_0.2": {"tests": "minimum contrast 0.2 instead of 0.05", "networks": list(PILOT_NETWORKS),
                     "generator": {"min_contrast": 0.2}},
    "amplitude_0.1": {"tests": "perturbation amplitude 10-20% of the radius instead of 5-20%",
                      "networks": list(PILOT_NETWORKS), "generator": {"amplitude_range": (0.10, 0.20)}},
    "radius_8px": {"tests": "radii 8-64 px instead of 16-64 px (256x256)", "networks": list(PILOT_NETWORKS),
                   "generator": {"radius_range": (1.0 / 32.0, 1.0 / 4.0)}},
    "lr_1e-3": {"tests": "learning rate 1e-3 instead of 5e-4", "networks": list(PILOT_NETWORKS), "lr": 1e-3},
    "lr_2e-4": {"tests": "learning rate 2e-4 instead of 5e-4", "networks": list(PILOT_NETWORKS), "lr": 2e-4},
    # the remaining gap (issue 39, item 5): the thesis-era code where the thesis's text leaves room
    "bn_padded": {
        "tests": "batch-norm statistics over the batch zero-padded to its largest particle count, as the "
                 "thesis-era code's nn.BatchNorm1d on padded particle arrays (ours: over the particles only)",
        "thesis": "2.2.4.4: 'each input value is standardized, using the sample mean and standard deviation "
                  "computed over the mini-batch'; 3.3.4: 'batches of multi-channel inputs must be processed': "
                  "which values a batch of APRs of different particle counts holds is not stated",
        "networks": ["APR_B"], "network": {"bn_include_padding": True}},
    "order_pool_relu_bn": {
        "tests": "blocks ordered conv -> pool -> ReLU -> BN (conv with bias), the thesis-era code's order, "
                 "instead of conv -> BN -> ReLU -> pool",
        "thesis": "4.1.3.1: 'All of these convolutions are followed by batch normalisation, max pooling and "
                  "rectifier activation functions' (Table 4.1: 'BN, relu pool'): the same outputs as ours, "
                  "exactly; the thesis-era demo normalised after the ReLU",
        "networks": list(PILOT_NETWORKS), "network": {"block_order": "pool_relu_bn"}},
    "avg_padded": {
        "tests": "global average over the batch's zero-padded particle axis (each APR's mean scaled by its "
                 "particle count over the batch's largest), as the thesis-era code's AdaptiveAvgPool1d",
        "thesis": "4.1.3.1: 'Since the number of particles may vary after these layers, the networks are "
                  "concluded with two layers of 1x1 convolution followed by global average pooling'",
        "networks": ["APR_B"], "network": {"avg_include_padding": True}},
    "softmax_ce": {
        "tests": "class scores through a softmax before the cross entropy (which applies its own), as the "
                 "thesis-era demo did: a bounded loss whose gradient does not vanish on confident answers",
        "thesis": "2.2.4.1: 'These probabilities are obtained by normalizing the output class scores into a "
                  "probability vector'; 4.1.3.2: 'The cross entropy loss is used, together with the Adam "
                  "optimizer'",
        "networks": list(PILOT_NETWORKS), "output": "softmax"},
}

#: What a factor's entry may change (besides ``tests``, ``networks`` and ``thesis``).
CHANGE_KEYS = ("input", "generator", "network", "lr", "output")


def pilot_runs(cfg: dict) -> list[dict]:
    """One dict per (factor, network, seed) with a stable ``id``: every factor on ``cfg["seeds"]``,
    and the factors of ``cfg["extra_seeds_for"]`` also on ``cfg["extra_seeds"]`` (the rank rule's
    third seed). ValueError if ``extra_seeds_for`` names an unknown factor."""
    extra, extra_for = list(cfg.get("extra_seeds", [])), list(cfg.get("extra_seeds_for", []))
    unknown = [f for f in extra_for if f not in FACTORS]
    if unknown:
        raise ValueError(f"extra_seeds_for names unknown factors {unknown}; known: {list(FACTORS)}")
    return [{"id": f"{factor}__{net}_s{seed}", "factor": factor, "network": net, "seed": seed}
            for factor, f in FACTORS.items() for net in f["networks"]
            for seed in list(cfg["seeds"]) + (extra if factor in extra_for else [])]


def _setting(run: dict, cfg: dict):
    """(model, InputSpec, GeneratorParams, lr) of a pilot."""
    from aprlib.data.synthetic import GeneratorParams
    from aprlib.models import apr_network, pixel_network
    f = FACTORS[run["factor"]]
    family, variant, kind, res = PILOT_NETWORKS[run["network"]]
    if res is not None:
        res = res * cfg["size"] // 256
    torch.manual_seed(run["seed"])
    kw = f.get("network", {})
    model = pixel_network(family, **kw) if kind == "pixel" else apr_network(family, variant, **kw)
    output = f.get("output", "logits")
    if output == "softmax":  # train_streamed's cross entropy then normalises a second time
        model = torch.nn.Sequential(model, torch.nn.Softmax(dim=1))
    elif output != "logits":
        raise ValueError(f"output must be 'logits' or 'softmax', got {output!r}")
    spec = InputSpec(kind, resolution=res) if kind == "pixel" else InputSpec(kind, rel_error=0.1)
    spec = dataclasses.replace(spec, **f.get("input", {}))
    params = dataclasses.replace(GeneratorParams.default(), **f.get("generator", {}))
    return model, spec, params, f.get("lr", cfg["lr"])


def run_pilot(run: dict, cfg: dict, progress: bool = True) -> pd.DataFrame:
    """Train one pilot (seeded initialisation and stream, as :func:`aprbook.runs.run_streamed`)."""
    from aprlib.data.synthetic import SyntheticShapesStream
    model, spec, params, lr = _setting(run, cfg)
    stream = SyntheticShapesStream(seed=1000 + run["seed"], size=(cfg["size"], cfg["size"]), params=params)
    return train_streamed(model, stream, spec, cfg["n_batches"], cfg["batch_size"], lr, progress=progress,
                          desc=run["id"])


def pilot_store(run: dict, cfg: dict, profile: str, results_dir) -> ResultStore:
    """The store of one pilot; its parameters are the run, the factor's change and what it tests
    (not its ``thesis`` quote, which documents it), and the profile's size, batch, budget and rate."""
    f = {k: v for k, v in FACTORS[run["factor"]].items() if k not in ("networks", "thesis")}
    params = {**run, "change": f, **{k: cfg[k] for k in ("size", "batch_size", "n_batches", "lr")}}
    return ResultStore(results_dir, f"pilots/{run['id']}", profile, params, notebook=PILOT_NOTEBOOK)


def compute_pilot(run: dict, cfg: dict, profile: str, results_dir, recompute: bool = False,
                  progress: bool = True) -> ResultStore:
    """Train ``run`` unless its stored result is fresh (pilots are minutes long: no checkpoints)."""
    store = pilot_store(run, cfg, profile, results_dir)
    if recompute or not store.fresh:
        store.start()
        metrics = run_pilot(run, cfg, progress)
        store.save_table("metrics", metrics)
        store.finish(seeds={"init": run["seed"], "stream": 1000 + run["seed"]},
                     extra={"compute_s": round(float(metrics.step_s.sum() + metrics.wait_s.sum()), 1),
                            "torch_threads": torch.get_num_threads()})
    return store


def pilot_summary(metrics: dict[str, pd.DataFrame], runs: list[dict], window: int = 100) -> pd.DataFrame:
    """One row per pilot run: mean accuracy over the last ``window`` batches (``acc_last``), over
    all batches (``acc_mean``, the area under the learning curve) and the first batch at which the
    running mean of 50 batches reaches 0.5 and 0.8 (NaN: not within the run)."""
    from .learning_curves import batches_to_accuracy
    rows = []
    for r in runs:
        if r["id"] not in metrics:
            continue
        m = metrics[r["id"]]
        rows.append({"factor": r["factor"], "network": r["network"], "seed": r["seed"], "batches": len(m),
                     "acc_last": float(m.accuracy.iloc[-window:].mean()), "acc_mean": float(m.accuracy.mean()),
                     "batches_to_0.5": batches_to_accuracy(m, 0.5, 50),
                     "batches_to_0.8": batches_to_accuracy(m, 0.8, 50),
                     "step_s": float(m.step_s.median())})
    return pd.DataFrame(rows, columns=["factor", "network", "seed", "batches", "acc_last", "acc_mean", "batches_to_0.5",
                                       "batches_to_0.8", "step_s"])


def factor_table(summary: pd.DataFrame, seeds=RANGE_RULE_SEEDS) -> pd.DataFrame:
    """Per (network, factor): mean and range over seeds of ``acc_last``, and the change of the seed
    mean against the baseline's, beside the larger of the two seed ranges (the noise it is judged
    against). Only the rows of ``seeds`` are read (default: the range rule's two, so that a third
    seed stored for the rank rule leaves these readings as they were; None: every seed)."""
    if seeds is not None:
        summary = summary[summary.seed.isin(list(seeds))]
    g = summary.groupby(["network", "factor"]).acc_last
    t = pd.DataFrame({"seeds": g.size(), "acc_last_mean": g.mean(), "acc_last_min": g.min(),
                      "acc_last_max": g.max()}).reset_index()
    base = t[t.factor == "baseline"].set_index("network")
    t["change_vs_baseline"] = t.acc_last_mean - t.network.map(base.acc_last_mean)
    t["seed_range"] = np.maximum(t.acc_last_max - t.acc_last_min,
                                 t.network.map(base.acc_last_max - base.acc_last_min))
    return t


def pilot_figure(metrics: dict[str, pd.DataFrame], runs: list[dict], smooth: int = 50):
    """Learning curves of the pilots: one panel per network, one line per factor (the mean over
    seeds of the ``smooth``-batch running accuracy), the baseline in black. Returns the figure."""
    import matplotlib.pyplot as plt

    from .display import FIG_WIDTH_IN, legend_outside
    nets = list(PILOT_NETWORKS)
    # the book's width, one legend of every factor under both panels (text legible on the page)
    fig, axes = plt.subplots(1, len(nets), figsize=(FIG_WIDTH_IN, 4.4), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, net in zip(axes[0], nets):
        for i, factor in enumerate(FACTORS):
            ids = [r["id"] for r in runs if r["network"] == net and r["factor"] == factor and r["id"] in metrics]
            if not ids:
                continue
            acc = pd.concat([metrics[k].accuracy.rolling(smooth, min_periods=1).mean() for k in ids], axis=1)
            style = {"color": "black", "lw": 2.2} if factor == "baseline" else {"color": f"C{i % 10}", "lw": 1.2,
                                                                                 "ls": ("-", "--", ":")[i // 10 % 3]}
            ax.plot(acc.index, acc.mean(axis=1), label=factor, **style)
        ax.set(xlabel="mini-batch", title=net, ylim=(0, 1))
        ax.axhline(1 / 6, color="grey", ls=":", lw=1)
    axes[0][0].set_ylabel(f"accuracy (running mean of {smooth}; mean of seeds)")
    if any(ax.get_legend_handles_labels()[0] for ax in axes[0]):
        legend_outside(fig, "bottom")
    return fig




def factor_effects(table: pd.DataFrame) -> pd.DataFrame:
    """Reads :func:`factor_table`: a factor ``speeds up`` (``slows down``) a network when the change
    of its seed-mean accuracy over the last batches against the baseline's exceeds (falls below
    minus) the larger seed range of the two, and has ``no clear effect`` otherwise; with fewer than
    two seeds on either side it is ``untested`` (no noise to judge against). This range rule says
    there is an effect with probability about 0.216 when there is none (two seeds a side, normal
    seed noise; :func:`simulated_false_positive_rate`); the gap pilots are judged by
    :func:`rank_effects` instead."""
    t = table[table.factor != "baseline"].copy()
    base_seeds = t.network.map(table[table.factor == "baseline"].set_index("network").seeds)
    t["effect"] = np.where((t.seeds < 2) | (base_seeds.fillna(0) < 2), "untested",
                           np.where(t.change_vs_baseline > t.seed_range, "speeds up",
                                    np.where(t.change_vs_baseline < -t.seed_range, "slows down", "no clear effect")))
    return t


def range_rule(arm, base) -> np.ndarray:
    """The range rule of :func:`factor_effects` on arrays: ``arm`` (..., n) and ``base`` (..., m)
    hold ``acc_last`` of a factor's and the baseline's seeds; +1 (speeds up) where the change of the
    means exceeds the larger of the two ranges (max - min), -1 (slows down) where it falls below
    minus that range, 0 otherwise. Shape (...,), int."""
    arm, base = np.asarray(arm, float), np.asarray(base, float)
    change = arm.mean(-1) - base.mean(-1)
    noise = np.maximum(np.ptp(arm, axis=-1), np.ptp(base, axis=-1))
    return np.where(change > noise, 1, np.where(change < -noise, -1, 0))


def rank_rule(arm, base) -> np.ndarray:
    """The rank rule of the module docstring on arrays: ``arm`` (..., n) and ``base`` (..., m) hold
    ``acc_last`` of a factor's and the baseline's seeds; +1 (speeds up) where every value of ``arm``
    exceeds every value of ``base``, -1 (slows down) where every one falls below, 0 otherwise (ties
    included). Shape (...,), int."""
    arm, base = np.asarray(arm, float), np.asarray(base, float)
    if arm.shape[-1] < 1 or base.shape[-1] < 1:
        raise ValueError("the rank rule needs at least one value on each side")
    return np.where(arm.min(-1) > base.max(-1), 1, np.where(arm.max(-1) < base.min(-1), -1, 0))


def rank_rule_false_positive_rate(n_arm: int = len(RANK_RULE_SEEDS), n_base: int = len(RANK_RULE_SEEDS)) -> dict:
    """Exact false-positive rates of :func:`rank_rule` when the ``n_arm + n_base`` values are
    exchangeable (no effect) and distinct: ``per_direction`` = 1 / C(n_arm + n_base, n_arm) (1/20
    for three seeds a side), ``either`` twice that (Fractions)."""
    for name, n in (("n_arm", n_arm), ("n_base", n_base)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    p = Fraction(1, math.comb(n_arm + n_base, n_arm))
    return {"per_direction": p, "either": 2 * p}


def simulated_false_positive_rate(rule: str, n_seeds: int, shared: float = 0.0, n_sim: int = 400_000,
                                  seed: int = 0) -> dict:
    """Monte-Carlo false-positive rates of ``rule`` ('range' or 'rank') with ``n_seeds`` seeds a
    side and no effect: each seed's two values (factor and baseline) are ``sqrt(shared) * a +
    sqrt(1 - shared) * e`` with a (shared by the seed: the same initialisation seed and stream) and
    e independent standard normals; ``shared`` in [0, 1) is the shared fraction of the variance.
    Both rules are scale-free, so the noise's scale does not matter. Returns ``up``, ``down`` and
    ``either`` (fractions of ``n_sim`` draws)."""
    if rule not in ("range", "rank"):
        raise ValueError(f"rule must be 'range' or 'rank', got {rule!r}")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 2:
        raise ValueError(f"n_seeds must be an integer >= 2, got {n_seeds!r}")
    if not 0.0 <= shared < 1.0:
        raise ValueError(f"shared must be in [0, 1), got {shared!r}")
    rng = np.random.default_rng(seed)
    common = np.sqrt(shared) * rng.standard_normal((n_sim, n_seeds))
    arm = common + np.sqrt(1 - shared) * rng.standard_normal((n_sim, n_seeds))
    base = common + np.sqrt(1 - shared) * rng.standard_normal((n_sim, n_seeds))
    fired = (range_rule if rule == "range" else rank_rule)(arm, base)
    return {"up": float(np.mean(fired == 1)), "down": float(np.mean(fired == -1)), "either": float(np.mean(fired != 0))}


def rank_effects(summary: pd.DataFrame, seeds=RANK_RULE_SEEDS) -> pd.DataFrame:
    """The rank rule on :func:`pilot_summary`: per (network, factor) other than the baseline, the
    ``acc_last`` of ``seeds`` (mean, min, max), the baseline's min and max on the same seeds, the
    change of the means, and ``effect``: ``speeds up`` / ``slows down`` / ``no clear effect`` by
    :func:`rank_rule`, ``untested`` when the factor or the baseline lacks one of ``seeds``;
    ``false_positive_rate`` is the rule's chance of an effect in either direction when there is
    none (1/10 for three seeds a side; NaN if untested)."""
    seeds = list(seeds)
    s = summary[summary.seed.isin(seeds)]
    fpr = float(rank_rule_false_positive_rate(len(seeds), len(seeds))["either"])
    rows = []
    for (net, factor), g in s.groupby(["network", "factor"], sort=True):
        if factor == "baseline":
            continue
        b = s[(s.network == net) & (s.factor == "baseline")]
        tested = set(g.seed) == set(seeds) and set(b.seed) == set(seeds)
        effect = {1: "speeds up", -1: "slows down", 0: "no clear effect"}[int(rank_rule(g.acc_last, b.acc_last))] \
            if tested else "untested"
        rows.append({"network": net, "factor": factor, "seeds": len(g), "baseline_seeds": len(b),
                     "acc_last_mean": g.acc_last.mean(), "acc_last_min": g.acc_last.min(),
                     "acc_last_max": g.acc_last.max(), "baseline_min": b.acc_last.min() if len(b) else np.nan,
                     "baseline_max": b.acc_last.max() if len(b) else np.nan,
                     "change_vs_baseline": g.acc_last.mean() - b.acc_last.mean() if len(b) else np.nan,
                     "effect": effect, "false_positive_rate": fpr if tested else np.nan})
    return pd.DataFrame(rows, columns=["network", "factor", "seeds", "baseline_seeds", "acc_last_mean", "acc_last_min",
                                       "acc_last_max", "baseline_min", "baseline_max", "change_vs_baseline", "effect",
                                       "false_positive_rate"])


def main(argv=None) -> None:
    import argparse
    from .profiles import check_options, profile_settings
    ap = argparse.ArgumentParser(prog="python -m aprbook.pilots", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="book", choices=["smoke", "book"])
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the pilot ids and stop")
    ap.add_argument("--factor", action="append", default=[], metavar="NAME",
                    help="add every pilot of this factor (repeatable)")
    ap.add_argument("runs", nargs="*", help="pilot ids (default: every pilot)")
    args = ap.parse_args(argv)
    check_options(ap, profile=args.profile, results_dir=args.results_dir)
    cfg = profile_settings("pilots", args.profile)
    runs = {r["id"]: r for r in pilot_runs(cfg)}
    unknown_factors = [f for f in args.factor if f not in FACTORS]
    if unknown_factors:
        ap.error(f"unknown factors {unknown_factors}; choose from {list(FACTORS)}")
    chosen = list(args.runs) + [k for k, r in runs.items() if r["factor"] in args.factor and k not in args.runs]
    if args.list:
        print("\n".join(chosen if args.factor else runs))
        return
    unknown = [r for r in args.runs if r not in runs]
    if unknown:
        ap.error(f"unknown pilot ids {unknown}; see --list")
    for rid in chosen or list(runs):
        store = compute_pilot(runs[rid], cfg, args.profile, args.results_dir, args.recompute)
        print(f"{rid}: {store.dir}", flush=True)


if __name__ == "__main__":
    main()
