"""Result storage: atomic writes, provenance, load-instead-of-recompute, profiles."""
import json

import pandas as pd
import pytest

from aprlib.profiles import PROFILES, profile_settings
from aprlib.provenance import ResultStore, atomic_write


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half-written")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left behind


def test_store_is_fresh_only_for_same_profile_and_params(tmp_path):
    params = {"n_images": 3, "e_values": [0.1, 0.2]}
    store = ResultStore(tmp_path, "exp", "smoke", params)
    assert not store.fresh
    store.start()
    store.save_table("t", pd.DataFrame({"a": [1, 2]}))
    prov = store.finish(seeds={"data": 1})
    assert store.fresh
    assert prov["profile"] == "smoke" and prov["params"] == params and prov["seeds"] == {"data": 1}
    assert {"commit", "machine", "packages", "wall_time_s"} <= set(prov)
    assert json.loads((tmp_path / "exp" / "smoke" / "provenance.json").read_text())["params_hash"] == store.key
    assert store.load_table("t").a.tolist() == [1, 2]
    assert not ResultStore(tmp_path, "exp", "smoke", {**params, "n_images": 4}).fresh
    assert not ResultStore(tmp_path, "exp", "book", params).fresh
    store.start()  # a new computation invalidates the old provenance until it finishes
    assert not store.fresh


def test_profiles_exist_for_every_experiment_and_reject_unknown_names():
    for experiment, table in PROFILES.items():
        assert {"smoke", "book", "paper"} <= set(table)
        assert profile_settings(experiment, "smoke") == table["smoke"]
    with pytest.raises(ValueError, match="unknown profile"):
        profile_settings("apr_synthetic", "huge")
    with pytest.raises(ValueError, match="unknown experiment"):
        profile_settings("nope", "smoke")
