"""Summaries of streamed-training learning curves (thesis 4.1.3.2-4.1.3.3) and the checks of the
thesis's claims on them: convergence speed, accuracy dips, and Table 4.2's ordering of errors by
information loss; and the claims of Fig 4.9 on per-epoch validation curves.

``metrics`` is the per-batch table of :func:`aprlib.training.train_streamed` (columns batch,
loss, accuracy, ...; accuracy of each fresh batch before its update).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["batches_to_accuracy", "max_dip", "final_error", "run_summary", "information_ordering",
           "accuracy_ci", "epoch_curve_claims"]


def _check(metrics: pd.DataFrame) -> pd.Series:
    if not {"batch", "accuracy"} <= set(metrics.columns):
        raise ValueError("metrics needs the columns 'batch' and 'accuracy'")
    if len(metrics) == 0:
        raise ValueError("metrics is empty")
    return metrics.set_index("batch")["accuracy"].astype(float)


def batches_to_accuracy(metrics: pd.DataFrame, threshold: float, window: int = 50) -> float:
    """First batch index at which the running mean of ``window`` batch accuracies (full windows
    only) reaches ``threshold``; NaN if it never does."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    run = _check(metrics).rolling(window, min_periods=window).mean()
    hit = run[run >= threshold]
    return float(hit.index[0]) if len(hit) else float("nan")


def max_dip(metrics: pd.DataFrame, window: int = 20, after: int = 0) -> float:
    """Largest drop of the ``window``-batch running mean accuracy below its previous maximum,
    counting batches from ``after`` on (the "dips" of thesis Fig 4.3/4.4; 0 = monotone)."""
    run = _check(metrics).rolling(window, min_periods=window).mean()
    run = run[run.index >= after].dropna()
    if run.empty:
        return float("nan")
    return float((run.cummax() - run).max())


def final_error(metrics: pd.DataFrame, last: int = 100) -> tuple[float, float]:
    """Mean and standard deviation of the error (1 - accuracy) over the last ``last`` batches
    (thesis Table 4.2)."""
    err = 1.0 - _check(metrics).iloc[-last:]
    return float(err.mean()), float(err.std(ddof=1)) if len(err) > 1 else float("nan")


def run_summary(metrics: pd.DataFrame, smooth: int = 50, last: int = 100, dip_window: int = 20,
                thresholds=(0.5, 0.9, 0.95)) -> dict:
    """One row of learning-curve numbers: final error mean/sd over ``last`` batches, batches to
    each accuracy threshold (running mean of ``smooth``), largest dip after the first ``smooth``
    batches, and the median step time (s) when recorded."""
    mean, sd = final_error(metrics, last)
    row = {"error_mean": mean, "error_sd": sd}
    for t in thresholds:
        row[f"batches_to_{t:g}"] = batches_to_accuracy(metrics, t, smooth)
    row["max_dip"] = max_dip(metrics, dip_window, after=smooth)
    if "step_s" in metrics:
        row["step_s"] = float(metrics["step_s"].median())
    return row


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return float("nan") if np.mean(a) != np.mean(b) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def information_ordering(errors: dict[str, np.ndarray]) -> pd.DataFrame:
    """Check thesis Table 4.2's reading against per-batch errors of the last batches.

    ``errors`` maps 'APR 0.1', 'APR 0.4', 'APR 0.6', 'APR 0.8', 'Pix 256', 'Pix 128', 'Pix 64'
    to arrays of per-batch errors. Returns one row per claim with the compared means, the
    Welch t-test p-value (for information: it treats batches as independent samples, which they
    are only approximately) and ``holds``. "Roughly equal" holds when the means differ by less
    than the larger batch-to-batch standard deviation of the two (the thesis's own numbers would
    fail a t-test at n = 100: 0.0102 +- 0.0048 vs 0.0116 +- 0.0040 gives p = 0.03); "between"
    holds when both inequalities hold on the means.
    """
    need = ["APR 0.1", "APR 0.4", "APR 0.6", "APR 0.8", "Pix 256", "Pix 128", "Pix 64"]
    missing = [k for k in need if k not in errors]
    if missing:
        raise ValueError(f"errors lacks {missing}")
    e = {k: np.asarray(errors[k], dtype=float) for k in need}
    m = {k: float(v.mean()) for k, v in e.items()}
    rows = []

    def equal(a, b, claim):
        tol = max(float(e[a].std(ddof=1)), float(e[b].std(ddof=1)))
        rows.append({"claim": claim, "compared": f"{a} vs {b}", "values": f"{m[a]:.4f} vs {m[b]:.4f}",
                     "p_value": _welch_p(e[a], e[b]), "holds": bool(abs(m[a] - m[b]) <= tol)})

    def between(lo, x, hi, claim):
        rows.append({"claim": claim, "compared": f"{lo} < {x} < {hi}",
                     "values": f"{m[lo]:.4f} < {m[x]:.4f} < {m[hi]:.4f}", "p_value": float("nan"),
                     "holds": bool(m[lo] < m[x] < m[hi])})

    equal("APR 0.1", "Pix 256", "lossless APR and full-resolution pixels perform equally")
    between("Pix 256", "APR 0.4", "Pix 128", "E = 0.4 lies between full and once-downsampled pixels")
    equal("APR 0.6", "Pix 128", "E = 0.6 performs roughly like once-downsampled pixels")
    between("Pix 128", "APR 0.8", "Pix 64", "E = 0.8 lies between once and twice-downsampled pixels")
    apr = [m[f"APR {x}"] for x in ("0.1", "0.4", "0.6", "0.8")]
    rows.append({"claim": "APR error grows with E", "compared": "APR 0.1 < 0.4 < 0.6 < 0.8",
                 "values": " < ".join(f"{v:.4f}" for v in apr), "p_value": float("nan"),
                 "holds": bool(np.all(np.diff(apr) > 0))})
    return pd.DataFrame(rows)


def accuracy_ci(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of an accuracy ``correct / n``."""
    ci = stats.binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def _wilson_half_width(accuracy: float, n: int) -> float:
    lo, hi = accuracy_ci(round(accuracy * n), n)
    return (hi - lo) / 2


def epoch_curve_claims(curves: dict[str, pd.DataFrame], n_val: int, reach: float = 0.95) -> pd.DataFrame:
    """Check thesis Fig 4.9's three claims on per-epoch validation accuracy.

    ``curves`` maps 'Pixels', 'Pixels (expanded)' and 'APR' to tables with columns epoch and
    val_accuracy (``n_val`` validation images). Returns one row per claim with our values and
    ``holds``:

    - same accuracy: the best accuracies differ by at most the largest Wilson 95% half-width at
      ``n_val`` (differences the validation set cannot resolve);
    - APR and expanded converge faster: both reach ``reach`` x the lowest of the three best
      accuracies (a level every network reaches) at an earlier epoch than Pixels;
    - pixel dips, APR stable: each pixel network's largest epoch-to-epoch drop exceeds the APR's.
    """
    need = ["Pixels", "Pixels (expanded)", "APR"]
    missing = [k for k in need if k not in curves]
    if missing:
        raise ValueError(f"curves lacks {missing}")
    acc = {k: curves[k].set_index("epoch")["val_accuracy"].sort_index() for k in need}
    if any(len(a) == 0 for a in acc.values()) or n_val < 1:
        raise ValueError("every curve needs at least one epoch and n_val must be positive")
    best = {k: float(a.max()) for k, a in acc.items()}
    tol = max(_wilson_half_width(b, n_val) for b in best.values())
    spread = max(best.values()) - min(best.values())
    target = reach * min(best.values())
    first = {k: int(a.index[np.argmax(a.to_numpy() >= target)]) for k, a in acc.items()}
    drop = {k: float(max(0.0, -np.diff(a.to_numpy()).min())) if len(a) > 1 else 0.0 for k, a in acc.items()}
    fmt = "; ".join
    return pd.DataFrame([
        {"claim": "all networks converge to roughly the same accuracy",
         "values": fmt(f"{k} {v:.3f}" for k, v in best.items()) + f" (spread {spread:.3f}, tolerance {tol:.3f})",
         "holds": bool(spread <= tol)},
        {"claim": "APRNet and expanded pixels converge faster than Pixels",
         "values": f"first epoch at accuracy >= {target:.3f}: " + fmt(f"{k} {v}" for k, v in first.items()),
         "holds": bool(first["APR"] < first["Pixels"] and first["Pixels (expanded)"] < first["Pixels"])},
        {"claim": "the pixel networks dip, the APRNet is more stable",
         "values": "largest epoch-to-epoch drop: " + fmt(f"{k} {v:.3f}" for k, v in drop.items()),
         "holds": bool(min(drop["Pixels"], drop["Pixels (expanded)"]) > drop["APR"])},
    ])
