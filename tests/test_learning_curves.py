import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from aprlib.learning_curves import (batches_to_accuracy, final_error, information_ordering, max_dip,
                                    run_summary)


def curve(acc):
    acc = np.asarray(acc, float)
    return pd.DataFrame({"batch": np.arange(len(acc)), "accuracy": acc, "loss": 1 - acc,
                         "step_s": np.full(len(acc), 0.1)})


def test_batches_to_accuracy_first_full_window():
    m = curve([0.0] * 10 + [1.0] * 10)
    # running mean of 4 reaches 0.5 when the window holds two ones: batches 8..11 -> index 11
    assert batches_to_accuracy(m, 0.5, window=4) == 11
    assert batches_to_accuracy(m, 1.0, window=4) == 13
    assert np.isnan(batches_to_accuracy(curve([0.2] * 20), 0.5, window=4))


def test_max_dip_monotone_is_zero_and_dip_is_found():
    assert max_dip(curve(np.linspace(0, 1, 60)), window=5) == pytest.approx(0.0)
    acc = [1.0] * 30 + [0.0] * 5 + [1.0] * 30
    assert max_dip(curve(acc), window=5) == pytest.approx(1.0)
    assert max_dip(curve(acc), window=10) == pytest.approx(0.5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=3, max_size=200), st.integers(1, 50))
def test_final_error_matches_numpy(acc, last):
    mean, sd = final_error(curve(acc), last)
    tail = 1 - np.asarray(acc)[-last:]
    assert mean == pytest.approx(tail.mean())
    if len(tail) > 1:
        assert sd == pytest.approx(tail.std(ddof=1), abs=1e-12)


def test_run_summary_and_bad_input():
    row = run_summary(curve(np.linspace(0, 1, 300)), smooth=10, last=20)
    assert row["batches_to_0.5"] < row["batches_to_0.9"] < row["batches_to_0.95"]
    assert row["step_s"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="columns"):
        run_summary(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="empty"):
        final_error(curve([]))
    with pytest.raises(ValueError, match="threshold"):
        batches_to_accuracy(curve([0.5]), 1.5)


def _errors(means, n=100, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(v, THESIS_SD[k], n) for k, v in means.items()}


# thesis Table 4.2: mean and sd of the error over the last 100 batches
THESIS = {"APR 0.1": 0.0013, "Pix 256": 0.0016, "APR 0.4": 0.0071, "APR 0.6": 0.0102, "Pix 128": 0.0116,
          "APR 0.8": 0.0261, "Pix 64": 0.0770}
THESIS_SD = {"APR 0.1": 0.0015, "Pix 256": 0.0028, "APR 0.4": 0.0031, "APR 0.6": 0.0048, "Pix 128": 0.0040,
             "APR 0.8": 0.0067, "Pix 64": 0.0123}


def test_information_ordering_holds_on_thesis_like_numbers():
    res = information_ordering(_errors(THESIS))
    assert len(res) == 5 and res.holds.all(), res


def test_information_ordering_fails_when_ordering_is_broken():
    broken = dict(THESIS, **{"APR 0.4": 0.05, "APR 0.6": 0.03})
    res = information_ordering(_errors(broken)).set_index("compared")
    assert not res.loc["Pix 256 < APR 0.4 < Pix 128", "holds"]
    assert not res.loc["APR 0.6 vs Pix 128", "holds"]  # 0.03 vs 0.0116: more than the sd apart
    assert not res.loc["APR 0.1 < 0.4 < 0.6 < 0.8", "holds"]
    with pytest.raises(ValueError, match="lacks"):
        information_ordering({"APR 0.1": [0.0]})


def _curve(values):
    return pd.DataFrame({"epoch": np.arange(1, len(values) + 1), "val_accuracy": values})


def test_epoch_curve_claims_accepts_the_thesis_shape_and_rejects_others():
    from aprlib.learning_curves import epoch_curve_claims
    thesis_like = {"Pixels": _curve([0.70, 0.80, 0.85, 0.80, 0.90, 0.96, 0.92, 0.97]),
                   "Pixels (expanded)": _curve([0.80, 0.90, 0.93, 0.86, 0.96, 0.97, 0.93, 0.97]),
                   "APR": _curve([0.85, 0.92, 0.94, 0.95, 0.96, 0.97, 0.97, 0.974])}
    claims = epoch_curve_claims(thesis_like, n_val=1000)
    assert claims.holds.tolist() == [True, True, True]
    # APR far worse, slow and dipping: every claim fails
    other = dict(thesis_like, APR=_curve([0.5, 0.55, 0.7, 0.5, 0.6, 0.8, 0.6, 0.8]))
    assert epoch_curve_claims(other, n_val=1000).holds.tolist() == [False, False, False]
    # the tolerance of "same accuracy" shrinks with more validation images
    close = dict(thesis_like, APR=_curve([0.85, 0.92, 0.94, 0.95, 0.955, 0.955, 0.955, 0.955]))
    assert epoch_curve_claims(close, n_val=100).holds[0] and not epoch_curve_claims(close, n_val=100000).holds[0]
    with pytest.raises(ValueError, match="lacks"):
        epoch_curve_claims({"APR": thesis_like["APR"]}, n_val=10)
