"""Natural images: the Dogs-vs-Cats loader and augmentation end to end on a generated folder of
JPEGs, and the scikit-image stand-in."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aprlib.data.natural import (ImageFiles, StandInPatches, augment, dogs_vs_cats_files, load_rgb, split_files,
                                 stand_in_photographs)
from aprlib.models import apr_network, pixel_network
from aprlib.train import InputSpec, train_fixed


@pytest.fixture
def dvc_folder(tmp_path):
    """A Kaggle-shaped training folder: cat.N.jpg / dog.N.jpg of different sizes, plus a stray file."""
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        for n in range(5):
            h, w = rng.integers(40, 120, 2)
            yy, xx = np.mgrid[:h, :w]
            disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2) if label == "cat" else \
                (abs(yy - h / 2) < h / 4) & (abs(xx - w / 2) < w / 4)
            img = np.where(disc[..., None], rng.integers(150, 255, 3), rng.integers(0, 100, 3)).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / f"{label}.{n}.jpg", quality=90)
    (tmp_path / "README.txt").write_text("not an image")
    return tmp_path


def test_dogs_vs_cats_loader_and_augmentation_end_to_end(dvc_folder):
    files = dogs_vs_cats_files(dvc_folder)
    assert len(files) == 10 and [lab for _, lab in files] == [0] * 5 + [1] * 5
    train, val = split_files(files, n_val=4, seed=1)
    assert len(train) == 6 and len(val) == 4 and not set(train) & set(val)
    assert split_files(files, n_val=4, seed=1) == (train, val)
    size = 64
    train_set = ImageFiles(train, size=size, seed=3)
    img, label = train_set.image(0)
    assert img.shape == (size, size, 3) and img.dtype == np.float32 and 0 <= img.min() <= img.max() <= 1
    aug = train_set.augmented(epoch=2)
    a, b = aug.image(1)[0], aug.image(1)[0]
    np.testing.assert_array_equal(a, b)  # deterministic per (seed, epoch, item)
    assert any(not np.array_equal(train_set.augmented(e).image(1)[0], train_set.image(1)[0]) for e in range(4))
    # APRs are formed from the augmented RGB images, with the level channel, and the network trains
    torch.manual_seed(0)
    for spec, model in ((InputSpec("apr", rel_error=0.2), apr_network("apr")), (InputSpec("pixel"),
                                                                                   pixel_network("pixels"))):
        metrics, best = train_fixed(model, aug, ImageFiles(val, size=size), spec, n_iterations=2, batch_size=3,
                                    eval_every=1, progress=False)
        assert len(metrics) == 2 and np.isfinite(metrics.val_loss).all() and best is not None


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dogs_vs_cats_files(tmp_path / "missing")
    with pytest.raises(ValueError, match="no cat"):
        dogs_vs_cats_files(tmp_path)
    with pytest.raises(ValueError, match="n_val"):
        split_files([1, 2, 3], n_val=3)
    with pytest.raises(ValueError, match="RGB"):
        augment(np.zeros((8, 8), np.float32), np.random.default_rng(0))


def test_load_rgb_resizes_grey_and_rgba(tmp_path):
    Image.fromarray(np.full((30, 50), 128, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((30, 50, 4), 200, np.uint8)).save(tmp_path / "a.png")
    g, a = load_rgb(tmp_path / "g.png", 32), load_rgb(tmp_path / "a.png", 32)
    assert g.shape == a.shape == (32, 32, 3)
    np.testing.assert_allclose(g, 128 / 255, atol=1e-6)


def test_augmentations_are_each_what_the_thesis_says():
    rng = np.random.default_rng(5)
    img = rng.random((64, 64, 3)).astype(np.float32)
    seen_black = False
    for s in range(40):
        out = augment(img, np.random.default_rng(s))
        assert out.shape == img.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
        seen_black |= bool((out.sum(axis=2) == 0).any())  # rotation/translation leave black corners
    assert seen_black
    # horizontal flip with p = 0.5: a dark-left / bright-right image ends up bright-left about half the time
    half = np.zeros((32, 32, 3), np.float32)
    half[:, 16:] = 1
    flipped = [augment(half, np.random.default_rng(s))[:, :16].mean() > 0.5 for s in range(400)]
    assert 0.42 < np.mean(flipped) < 0.58
    # brightness/contrast factors within [0.8, 1.2]: a constant image changes by at most 20% x 20%
    flat = np.full((16, 16, 3), 0.5, np.float32)
    for s in range(30):
        v = augment(flat, np.random.default_rng(s))[8, 8, 0]
        assert 0.5 * 0.8 * 0.8 - 0.01 <= v <= 0.5 * 1.2 * 1.2 + 0.01 or v == 0


def test_stand_in_patches():
    photos = stand_in_photographs()
    assert len(photos) == 12 and all(p.shape[2] == 3 and min(p.shape[:2]) == 512 for p in photos.values())
    train = StandInPatches(24, "train", seed=1, size=64, _photos=photos)
    val = StandInPatches(12, "val", seed=1, size=64, _photos=photos)
    assert train.labels.tolist() == list(range(12)) * 2
    x, y = train.image(13)
    assert x.shape == (64, 64, 3) and y == 1
    np.testing.assert_array_equal(train.image(13)[0], StandInPatches(24, "train", seed=1, size=64,
                                                                     _photos=photos).image(13)[0])
    assert not np.array_equal(train.augmented(0).image(13)[0], x) or not np.array_equal(
        train.augmented(1).image(13)[0], x)
    assert val.image(0)[1] == 0
    with pytest.raises(ValueError, match="split"):
        StandInPatches(4, "test", _photos=photos)
    with pytest.raises(ValueError, match="too small"):
        StandInPatches(4, crop=400, _photos=photos)
    with pytest.raises(IndexError):
        train.image(24)


class _Interrupting:
    """Wraps a dataset; raises after ``limit`` images (a run killed in the middle of an epoch)."""

    def __init__(self, ds, limit):
        self.ds, self.limit, self.calls = ds, limit, [0]

    def __len__(self):
        return len(self.ds)

    def augmented(self, epoch):
        out = _Interrupting(self.ds.augmented(epoch), self.limit)
        out.calls = self.calls
        return out

    def image(self, i):
        self.calls[0] += 1
        if self.calls[0] > self.limit:
            raise RuntimeError("killed")
        return self.ds.image(i)


@pytest.mark.parametrize("kind", ["apr", "pixel"])
def test_epoch_training_resumes_mid_epoch_exactly(tmp_path, kind):
    from aprlib.train import train_epochs
    photos = stand_in_photographs()
    train = StandInPatches(12, "train", seed=2, size=32, _photos=photos)
    val = StandInPatches(12, "val", seed=2, size=32, _photos=photos)
    spec = InputSpec("apr", rel_error=0.4) if kind == "apr" else InputSpec("pixel")

    def model():
        torch.manual_seed(0)
        return (apr_network("apr", n_classes=12, dropout=0.5) if kind == "apr"
                else pixel_network("pixels", n_classes=12, dropout=0.5))

    kw = dict(batch_size=4, lr=1e-3, seed=5, progress=False)
    ref = train_epochs(model(), train, val, spec, n_epochs=2, **kw)
    assert ref.epoch.tolist() == [1, 2] and (ref.epoch_s > 0).all()
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(RuntimeError, match="killed"):  # killed in epoch 2, after its first batch
        train_epochs(model(), _Interrupting(train, 12 + 6), val, spec, n_epochs=2, checkpoint=ckpt,
                     checkpoint_every_s=0, **kw)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    resumed = train_epochs(model(), train, val, spec, n_epochs=2, checkpoint=ckpt, **kw)
    cols = ["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    np.testing.assert_allclose(resumed[cols], ref[cols], rtol=1e-5, atol=1e-7)


def test_natural_networks_class_count():
    from aprlib.models import conv_weight_count
    two, twelve = pixel_network("pixels"), pixel_network("pixels", n_classes=12)
    assert conv_weight_count(twelve) - conv_weight_count(two) == 128 * 10
    with pytest.raises(ValueError, match="n_classes"):
        apr_network("apr", n_classes=1)


def test_natural_runs_smoke(tmp_path):
    from aprbook.profiles import profile_settings
    from aprbook.runs import compute_natural, natural_runs
    cfg = profile_settings("natural_training", "smoke")
    runs = natural_runs(cfg)
    assert [r["network"] for r in runs] == ["pixels", "pixels_expanded"] + ["apr"] * len(cfg["e_values"])
    book = profile_settings("natural_training", "book")
    assert book["batch_size"] == 24 and book["lr"] == 1e-4 and book["e_values"] == [0.2, 0.4, 0.6, 0.8]
    store = compute_natural(runs[2], cfg, "smoke", tmp_path / "r", tmp_path / "c", progress=False)
    m = store.load_table("metrics")
    assert m.epoch.tolist() == list(range(1, cfg["n_epochs"] + 1)) and m.val_accuracy.between(0, 1).all()
    assert store.provenance()["params"]["source"] == "stand_in"
