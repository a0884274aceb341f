"""One home for each setting (issue 39, item 7): the typed run configurations of aprbook.settings key
the result stores and checkpoints from their fields, refuse settings they do not know, and the shared
constants are the ones every user refers to."""
from __future__ import annotations

import dataclasses

import pytest

from aprlib.apr import THESIS_FORMATION, APRParameters
from aprlib.train import NORMALISATIONS, InputSpec

from aprbook import settings
from aprbook.profiles import PROFILES, profile_settings
from aprbook.runs import (EXPERIMENTS, finite_runs, finite_store, natural_store, primary_runs, primary_store,
                          run_checkpoint, streamed_runs, streamed_store)
from aprbook.settings import (LENGTH_FIELDS, UNSET, FiniteRunConfig, NaturalRunConfig, StreamedRunConfig,
                              checkpoint_params)

CONFIGS = (StreamedRunConfig, FiniteRunConfig, NaturalRunConfig)


def _streamed(profile="smoke", experiment="streamed_converged"):
    cfg = profile_settings(experiment, profile)
    return streamed_runs(cfg)[0], cfg


# --- the keys derive from the fields ---------------------------------------------------------------
def test_store_params_are_the_configuration_fields(tmp_path):
    run, cfg = _streamed()
    store = streamed_store(run, cfg, "smoke", tmp_path)
    config = StreamedRunConfig.of(run, cfg)
    assert store.params == config.params()
    assert set(store.params) == {f.name for f in dataclasses.fields(config) if getattr(config, f.name) is not UNSET}
    assert "n_batches" not in store.params and store.params["budgets"] == cfg["budgets"]  # the ladder stands for it


def test_the_checkpoint_leaves_out_exactly_the_length_fields(tmp_path):
    run, cfg = _streamed()
    run = {**run, "at_least": cfg["budgets"][-1]}
    store = streamed_store(run, cfg, "smoke", tmp_path)
    ck = run_checkpoint(store, tmp_path / "ck")
    assert ck.config == {"profile": "smoke", "params": checkpoint_params(store.params)}
    assert set(store.params) - set(ck.config["params"]) == {"budgets", "at_least"}
    assert not set(ck.config["params"]) & set(LENGTH_FIELDS)
    # a run's length never changes its checkpoint; any other field does
    longer = streamed_store(run, {**cfg, "budgets": [*cfg["budgets"], 8], "n_batches": 8}, "smoke", tmp_path)
    assert longer.key != store.key and run_checkpoint(longer, tmp_path / "ck").key == ck.key
    other = streamed_store(run, {**cfg, "lr": 2 * cfg["lr"]}, "smoke", tmp_path)
    assert run_checkpoint(other, tmp_path / "ck").key != ck.key


def test_every_length_field_is_a_field_of_some_run():
    from aprbook.segmentation import SegmentationConfig
    names = {f.name for cls in (*CONFIGS, SegmentationConfig) for f in dataclasses.fields(cls)}
    assert set(LENGTH_FIELDS) <= names
    for cls in CONFIGS:  # the other fields are what a checkpoint keeps
        kept = [f.name for f in dataclasses.fields(cls) if f.name not in LENGTH_FIELDS]
        assert {"id", "seed", "lr", "batch_size", "size"} <= set(kept)


def test_a_sensitivity_arms_normalisation_keys_its_store_and_checkpoint(tmp_path):
    """The run's own setting wins over the profile's and reaches the key: the arm and the run it
    repeats differ in their stores and their checkpoints."""
    cfg = profile_settings("streamed_primary", "smoke")
    runs = {r["id"]: r for r in primary_runs(cfg)}
    base, arm = runs["APR_B_E0.1_s1"], runs["norm_image__APR_B_E0.1_s1"]
    a, b = primary_store(base, cfg, "smoke", tmp_path), primary_store(arm, cfg, "smoke", tmp_path)
    assert (a.params["normalise"], b.params["normalise"]) == ("dataset", "image")
    assert run_checkpoint(a, tmp_path).config["params"]["normalise"] == "dataset"
    assert run_checkpoint(b, tmp_path).config["params"]["normalise"] == "image"
    assert StreamedRunConfig.of(arm, cfg).input_normalise == "image"
    none_arm = runs["norm_none__APR_B_E0.1_s1"]
    assert primary_store(none_arm, cfg, "smoke", tmp_path).params["normalise"] is None  # recorded as None
    # the first streamed runs had no normalisation setting: unset, left out of their keys (their
    # stored results keep their hash), and their input as generated
    run, first = _streamed(experiment="streamed_training")
    assert "normalise" not in streamed_store(run, first, "smoke", tmp_path).params
    assert StreamedRunConfig.of(run, first).input_normalise is None


def test_every_profile_of_every_run_experiment_builds_its_configurations(tmp_path):
    for experiment, (name, list_runs, _, make_store) in EXPERIMENTS.items():
        for profile in PROFILES[name]:
            cfg = profile_settings(name, profile)
            for run in list_runs(cfg):
                make_store(run, cfg, profile, tmp_path)


# --- bad input ---------------------------------------------------------------------------------
def test_an_unknown_profile_setting_is_refused_by_name(tmp_path):
    run, cfg = _streamed()
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['learning_rate'\] in a profile of streamed_conv"):
        streamed_store(run, {**cfg, "learning_rate": 1e-3}, "smoke", tmp_path)
    cfg = profile_settings("finite_converged", "smoke")
    with pytest.raises(ValueError, match=r"\['momentum'\].*must be a field"):
        finite_store(finite_runs(cfg)[0], {**cfg, "momentum": 0.9}, "smoke", tmp_path)
    cfg = profile_settings("natural_training", "smoke")
    with pytest.raises(ValueError, match=r"\['augment'\]"):
        natural_store({"id": "apr_E0.2_s1", "network": "apr", "rel_error": 0.2, "seed": 1},
                      {**cfg, "augment": False}, "smoke", tmp_path)


def test_a_run_setting_that_is_no_field_is_refused(tmp_path):
    """A setting added to a run dict (e.g. a new arm's) that the configuration does not know would be
    left out of the keys: refused, naming it."""
    run, cfg = _streamed()
    with pytest.raises(ValueError, match=r"has \['padding_mode'\], which StreamedRunConfig has no field for"):
        streamed_store({**run, "padding_mode": "replicate"}, cfg, "smoke", tmp_path)


@pytest.mark.parametrize("normalise", ["Dataset", "minmax", 0])
def test_a_normalisation_outside_NORMALISATIONS_is_refused(normalise, tmp_path):
    run, cfg = _streamed()
    with pytest.raises(ValueError, match=r"normalise=.* is not one of aprlib\.train\.NORMALISATIONS"):
        streamed_store(run, {**cfg, "normalise": normalise}, "smoke", tmp_path)
    with pytest.raises(ValueError, match="NORMALISATIONS"):
        StreamedRunConfig.of({**run, "normalise": normalise}, cfg)


@pytest.mark.parametrize("change, message", [
    ({"lr": 0}, "lr must be a positive number"),
    ({"lr": "5e-4"}, "lr must be a positive number"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
    ({"size": 128.0}, "size must be a positive int"),
    ({"budgets": []}, "budgets must be a non-empty list"),
    ({"budgets": (2, 4)}, "budgets must be a non-empty list"),
])
def test_bad_values_are_refused_by_name(change, message):
    run, cfg = _streamed()
    with pytest.raises(ValueError, match=message):
        StreamedRunConfig.of(run, {**cfg, **change})


def test_a_missing_setting_or_a_double_length_is_refused():
    run, cfg = _streamed()
    with pytest.raises(ValueError, match=r"neither the run nor its profile gives \['lr'\]"):
        StreamedRunConfig.of(run, {k: v for k, v in cfg.items() if k != "lr"})
    params = StreamedRunConfig.of(run, cfg).params()
    with pytest.raises(ValueError, match="exactly one of n_batches and budgets"):
        StreamedRunConfig.from_params({**params, "n_batches": 4})
    with pytest.raises(ValueError, match="exactly one of n_batches and budgets"):
        StreamedRunConfig.from_params({k: v for k, v in params.items() if k != "budgets"})
    with pytest.raises(ValueError, match=r"stored parameters \['colour'\]"):
        StreamedRunConfig.from_params({**params, "colour": "red"})
    with pytest.raises(ValueError, match="variant='dense' is not one of"):
        StreamedRunConfig.from_params({**params, "variant": "dense"})


def test_run_checkpoint_refuses_a_budget_that_sets_no_length(tmp_path):
    run, cfg = _streamed()
    store = streamed_store(run, cfg, "smoke", tmp_path)
    assert run_checkpoint(store, tmp_path, "budgets").key == run_checkpoint(store, tmp_path).key
    with pytest.raises(ValueError, match="'lr' is not a field that sets a run's length"):
        run_checkpoint(store, tmp_path, "lr")


# --- the shared constants --------------------------------------------------------------------------
def test_the_thesis_formation_has_one_home():
    from aprbook.apr_stats import FORMATION_SETTINGS
    from aprbook.scaling import FORMATION
    assert THESIS_FORMATION == APRParameters(rel_error=0.1, gradient_smoothing=0.0, sigma_th=0.01)
    spec = InputSpec()
    assert (spec.rel_error, spec.gradient_smoothing, spec.sigma_th) == (0.1, 0.0, 0.01)
    assert spec.formation == THESIS_FORMATION
    assert FORMATION_SETTINGS["thesis"] is THESIS_FORMATION
    assert FORMATION_SETTINGS["thesis_minimal"] == THESIS_FORMATION.replace(pulling_scheme="minimal")
    assert FORMATION_SETTINGS["libapr_default"] == APRParameters(gradient_smoothing=3.0, sigma_th=0.01)
    # recorded in the cost_scaling store's parameters: the same three keys and values as before
    assert FORMATION == {"rel_error": 0.1, "gradient_smoothing": 0.0, "sigma_th": 0.01}


def test_profiles_take_the_learning_rates_batch_sizes_and_normalisation_from_their_home():
    assert (settings.SYNTHETIC_LR, settings.SYNTHETIC_BATCH_SIZE) == (5e-4, 36)
    assert (settings.NATURAL_LR, settings.NATURAL_BATCH_SIZE) == (1e-4, 24)
    assert settings.NORMALISATIONS is NORMALISATIONS
    assert settings.BOOK_NORMALISATION in NORMALISATIONS
    assert set(settings.SENSITIVITY_NORMALISATIONS) == set(NORMALISATIONS) - {settings.BOOK_NORMALISATION}
    synthetic = ("streamed_training", "streamed_converged", "streamed_primary", "pilots", "finite_datasets",
                 "finite_converged")
    for name in synthetic:
        for profile, cfg in PROFILES[name].items():
            assert cfg["lr"] == settings.SYNTHETIC_LR, (name, profile)
            if profile != "smoke":
                assert cfg["batch_size"] == settings.SYNTHETIC_BATCH_SIZE, (name, profile)
            assert cfg.get("normalise", settings.BOOK_NORMALISATION) == settings.BOOK_NORMALISATION
    for profile, cfg in PROFILES["natural_training"].items():
        assert cfg["lr"] == settings.NATURAL_LR
        assert profile == "smoke" or cfg["batch_size"] == settings.NATURAL_BATCH_SIZE
