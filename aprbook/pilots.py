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
(those named, in the order named, else all); ``--list`` prints the ids.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from aprlib.train import InputSpec, train_streamed

from .provenance import ResultStore

__all__ = ["FACTORS", "PILOT_NETWORKS", "pilot_runs", "run_pilot", "pilot_store", "compute_pilot", "pilot_summary",
           "factor_table", "pilot_figure", "factor_effects", "DECISION_RULE"]

PILOT_NOTEBOOK = "notebooks/05a_pilots.ipynb"

#: The decision rule of the module docstring (written before any pilot finished), for the chapter.
DECISION_RULE = __doc__[__doc__.index("1. A pilot"):__doc__.index("Command line")].strip()

#: The networks of the pilots: (family, variant, input kind, pixel resolution or None).
PILOT_NETWORKS = {"APR_B": ("B", "full", "apr", None), "Pix_B_px64": ("B", "pixel", "pixel", 64)}

#: One factor changed at a time against the book's setting (``baseline``). Each entry: what it
#: tests, the networks it applies to, and the change: ``input`` (InputSpec fields), ``generator``
#: (GeneratorParams fields), ``network`` (network keyword arguments) or ``lr``.
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
}


def pilot_runs(cfg: dict) -> list[dict]:
    """One dict per (factor, network, seed) with a stable ``id``."""
    return [{"id": f"{factor}__{net}_s{seed}", "factor": factor, "network": net, "seed": seed}
            for factor, f in FACTORS.items() for net in f["networks"] for seed in cfg["seeds"]]


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
    f = {k: v for k, v in FACTORS[run["factor"]].items() if k != "networks"}
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


def factor_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (network, factor): mean and range over seeds of ``acc_last``, and the change of the seed
    mean against the baseline's, beside the larger of the two seed ranges (the noise it is judged
    against)."""
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
    nets = list(PILOT_NETWORKS)
    fig, axes = plt.subplots(1, len(nets), figsize=(6.5 * len(nets), 4.2), squeeze=False)
    for ax, net in zip(axes[0], nets):
        for i, factor in enumerate(FACTORS):
            ids = [r["id"] for r in runs if r["network"] == net and r["factor"] == factor and r["id"] in metrics]
            if not ids:
                continue
            acc = pd.concat([metrics[k].accuracy.rolling(smooth, min_periods=1).mean() for k in ids], axis=1)
            style = {"color": "black", "lw": 2.2} if factor == "baseline" else {"color": f"C{i}", "lw": 1.2}
            ax.plot(acc.index, acc.mean(axis=1), label=f"{factor} ({len(ids)} seeds)", **style)
        ax.set(xlabel="mini-batch", ylabel=f"accuracy (running mean of {smooth})", title=net, ylim=(0, 1))
        ax.axhline(1 / 6, color="grey", ls=":", lw=1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig




def factor_effects(table: pd.DataFrame) -> pd.DataFrame:
    """Reads :func:`factor_table`: a factor ``speeds up`` (``slows down``) a network when the change
    of its seed-mean accuracy over the last batches against the baseline's exceeds (falls below
    minus) the larger seed range of the two, and has ``no clear effect`` otherwise; with fewer than
    two seeds on either side it is ``untested`` (no noise to judge against)."""
    t = table[table.factor != "baseline"].copy()
    base_seeds = t.network.map(table[table.factor == "baseline"].set_index("network").seeds)
    t["effect"] = np.where((t.seeds < 2) | (base_seeds.fillna(0) < 2), "untested",
                           np.where(t.change_vs_baseline > t.seed_range, "speeds up",
                                    np.where(t.change_vs_baseline < -t.seed_range, "slows down", "no clear effect")))
    return t


def main(argv=None) -> None:
    import argparse
    from .profiles import check_options, profile_settings
    ap = argparse.ArgumentParser(prog="python -m aprbook.pilots", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="book", choices=["smoke", "book"])
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the pilot ids and stop")
    ap.add_argument("runs", nargs="*", help="pilot ids (default: every pilot)")
    args = ap.parse_args(argv)
    check_options(ap, profile=args.profile, results_dir=args.results_dir)
    cfg = profile_settings("pilots", args.profile)
    runs = {r["id"]: r for r in pilot_runs(cfg)}
    if args.list:
        print("\n".join(runs))
        return
    unknown = [r for r in args.runs if r not in runs]
    if unknown:
        ap.error(f"unknown pilot ids {unknown}; see --list")
    for rid in args.runs or list(runs):
        store = compute_pilot(runs[rid], cfg, args.profile, args.results_dir, args.recompute)
        print(f"{rid}: {store.dir}", flush=True)


if __name__ == "__main__":
    main()
