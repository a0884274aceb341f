"""Where does a streamed-trained APR_B go wrong on the synthetic task? (a diagnostic, not a test)

Trains APR_B on ``--batches`` streamed batches of 36 (thesis settings, one thread), then classifies
``--images`` fresh images and prints: accuracy with batch-norm in eval mode (running statistics)
and in train mode (batch statistics), the confusion matrix, and accuracy by contrast, object radius
and perturbation size in pixels (fuzzy classes). About 4 min per 300 batches on one core.

    .venv/bin/python tools/synthetic_error_diagnosis.py --batches 400 --images 900
"""
from __future__ import annotations

import argparse
import copy

import numpy as np
import pandas as pd
import torch

from aprlib.data.synthetic import CLASS_NAMES, SyntheticShapesStream, generate_image, sample_shape
from aprlib.models import apr_network
from aprlib.train import BatchBuilder, InputSpec, layer_plan, train_streamed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--images", type=int, default=900)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model, spec = apr_network("B", "full"), InputSpec("apr", rel_error=0.1)
    curve = train_streamed(model, SyntheticShapesStream(seed=args.seed), spec, n_batches=args.batches,
                           batch_size=36, lr=5e-4, progress=True)
    print(f"running accuracy of the last 50 training batches: {curve.accuracy.tail(50).mean():.3f}")
    builder, rows, modes = BatchBuilder(spec, layer_plan(model)), [], {"eval": [], "train": []}
    # in train mode batch norm uses each batch's statistics (the running ones it updates are unused)
    nets = {"eval": copy.deepcopy(model).eval(), "train": copy.deepcopy(model).train()}
    for start in range(0, args.images, 36):
        imgs, labels, specs = [], [], []
        for j in range(start, min(start + 36, args.images)):
            rng = np.random.default_rng([args.seed + 10_000, j])  # images the training stream never drew
            label = int(rng.integers(len(CLASS_NAMES)))
            specs.append(sample_shape(label, copy.deepcopy(rng)))  # the same draws generate_image makes
            imgs.append(generate_image(label, rng))
            labels.append(label)
        x, y = builder.inputs(imgs), torch.tensor(labels)
        for mode in modes:
            with torch.no_grad():
                pred = nets[mode](x).argmax(1)
            modes[mode].append((pred == y).float().sum().item())
            if mode == "eval":
                rows += [{"true": CLASS_NAMES[t], "predicted": CLASS_NAMES[p], "ok": t == p,
                          "contrast": abs(s.foreground - s.background), "radius_px": s.radius,
                          "perturbation_px": s.amplitude * s.radius} for s, t, p in zip(specs, labels, pred.tolist())]
    df = pd.DataFrame(rows)
    print({f"accuracy, batch norm in {k} mode": round(sum(v) / len(df), 3) for k, v in modes.items()})
    print(pd.crosstab(df.true, df.predicted).reindex(index=CLASS_NAMES, columns=CLASS_NAMES, fill_value=0).to_string())
    print(df.groupby(pd.cut(df.contrast, [0, 0.1, 0.2, 0.4, 1]), observed=True).ok.agg(["mean", "size"]).to_string())
    print(df.groupby(pd.cut(df.radius_px, [0, 24, 32, 48, 64]), observed=True).ok.agg(["mean", "size"]).to_string())
    fuzzy = df[df.true.str.startswith("fuzzy")]
    print(fuzzy.groupby(pd.cut(fuzzy.perturbation_px, [0, 2, 4, 6, 13]), observed=True).ok.agg(["mean", "size"])
          .to_string())


if __name__ == "__main__":
    main()
