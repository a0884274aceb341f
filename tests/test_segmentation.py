"""Segmentation on particles (:mod:`aprlib.train.segmentation`): the particle losses equal the pixel losses
of the piecewise-constant reconstruction (``logits[pixel_owner]``), values in float64 to 1e-10 and
gradients w.r.t. the particle logits, on random 2D and 3D APRs of several levels; on an APR of one
particle per pixel they equal the plain pixel losses; Dice / IoU against hand-computed values and the
set formulas, with the empty conventions; bad inputs raise errors naming the problem."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import aprlib
from aprlib import APRBatch, APRFeatures
from aprlib.train import (dice, dice_per_class, iou, iou_per_class, particle_bce_with_logits, particle_cross_entropy,
                          particle_predictions_to_pixels, particle_soft_dice_loss, particle_targets)
from test_cells import dense_apr, random_cells

SHAPES_2D = st.tuples(st.integers(1, 24), st.integers(1, 24))
SHAPES_3D = st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))


def _batch(shapes, seed, p=0.5):
    aprs = []
    for i, s in enumerate(shapes):
        level, coords = random_cells(s, seed + i, p)
        aprs.append(aprlib.APR.from_cells(s, level, coords))
    return APRBatch(aprs)


def _masks(shapes, k, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, k, size=s) for s in shapes]


def _pixels(batch, logits, masks):
    """The reconstruction (P, K) of the logits on the batch's pixels and the labels (P,), images in order."""
    rec = logits[batch.pixel_owner()]
    labels = torch.cat([torch.as_tensor(m, dtype=torch.int64).reshape(-1) for m in masks])
    return rec, labels


def _pixel_soft_dice(rec, labels, k_logits, n_classes, include_background, smooth, image_sizes=None):
    """Reference soft Dice loss on the pixels (rec (P, K) logits of the reconstruction)."""
    q = torch.softmax(rec, 1) if k_logits > 1 else torch.stack([1 - torch.sigmoid(rec[:, 0]), torch.sigmoid(rec[:, 0])], 1)
    t = F.one_hot(labels, n_classes).to(rec.dtype)
    if not include_background:
        q, t = q[:, 1:], t[:, 1:]
    parts = [(q, t)] if image_sizes is None else list(zip(torch.split(q, image_sizes), torch.split(t, image_sizes)))
    scores = [(2 * (qi * ti).sum(0) + smooth) / (qi.sum(0) + ti.sum(0) + smooth) for qi, ti in parts]
    return 1 - torch.stack(scores).mean()


def _grad(loss, x):
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    return g


def _check_losses(shapes, seed, p, k):
    batch = _batch(shapes, seed, p)
    masks = _masks(shapes, k, seed)
    g = torch.Generator().manual_seed(seed)
    n = batch.n_particles
    counts = particle_targets(batch, masks, k, dtype=torch.float64)
    sizes = [int(np.prod(s)) for s in shapes]

    # softmax cross-entropy: mean over all pixels, image mean, sum, class weights
    x = (3 * torch.randn(n, k, generator=g, dtype=torch.float64)).requires_grad_()
    rec, labels = _pixels(batch, x, masks)
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    refs = {
        "mean": F.cross_entropy(rec, labels),
        "sum": F.cross_entropy(rec, labels, reduction="sum"),
        "image_mean": torch.stack([F.cross_entropy(r, l) for r, l in
                                   zip(torch.split(rec, sizes), torch.split(labels, sizes))]).mean(),
    }
    for red, ref in refs.items():
        got = particle_cross_entropy(x, counts, reduction=red, batch=batch)
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(_grad(got, x), _grad(ref, x), rtol=1e-10, atol=1e-12)
    got, ref = particle_cross_entropy(x, counts, weight=w), F.cross_entropy(rec, labels, weight=w)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(_grad(got, x), _grad(ref, x), rtol=1e-10, atol=1e-12)
    per_particle = particle_cross_entropy(x, counts, reduction="none")
    assert per_particle.shape == (n,)
    torch.testing.assert_close(per_particle.sum(), refs["sum"], rtol=1e-10, atol=1e-10)

    # soft Dice (softmax), over the batch and per image, with and without background
    for bg in (False, True):
        for per_image in (False, True):
            got = particle_soft_dice_loss(x, counts, include_background=bg, per_image=per_image, batch=batch)
            ref = _pixel_soft_dice(rec, labels, k, k, bg, 1.0, sizes if per_image else None)
            torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(_grad(got, x), _grad(ref, x), rtol=1e-10, atol=1e-12)

    # binary: one sigmoid logit with the (N, 2) counts of a 0/1 mask
    bmasks = [m % 2 == 1 for m in masks]  # bool masks
    bcounts = particle_targets(batch, bmasks, 2, dtype=torch.float64)
    z = (3 * torch.randn(n, 1, generator=g, dtype=torch.float64)).requires_grad_()
    zrec, blabels = _pixels(batch, z, bmasks)
    for pw in (None, 2.5):
        kw = {} if pw is None else {"pos_weight": torch.tensor(pw, dtype=torch.float64)}
        got = particle_bce_with_logits(z, bcounts, pos_weight=pw)
        ref = F.binary_cross_entropy_with_logits(zrec[:, 0], blabels.double(), **kw)
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(_grad(got, z), _grad(ref, z), rtol=1e-10, atol=1e-12)
    got = particle_bce_with_logits(z, bcounts, reduction="image_mean", batch=batch)
    ref = torch.stack([F.binary_cross_entropy_with_logits(r[:, 0], l.double()) for r, l in
                       zip(torch.split(zrec, sizes), torch.split(blabels, sizes))]).mean()
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    got = particle_soft_dice_loss(z, bcounts)
    ref = _pixel_soft_dice(zrec, blabels, 1, 2, False, 1.0)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(_grad(got, z), _grad(ref, z), rtol=1e-10, atol=1e-12)

    # predictions on the pixel grid: the argmax (threshold) of the reconstruction
    for logits in (x, z):
        preds = particle_predictions_to_pixels(batch, logits)
        r, _ = _pixels(batch, logits.detach(), masks)
        want = r.argmax(1) if logits.shape[1] > 1 else (r[:, 0] > 0).long()
        assert [tuple(q.shape) for q in preds] == [tuple(s) for s in shapes]
        assert all(q.dtype == torch.int64 for q in preds)
        torch.testing.assert_close(torch.cat([q.reshape(-1) for q in preds]), want)


@settings(max_examples=15, deadline=None)
@given(shapes=st.lists(SHAPES_2D, min_size=1, max_size=3), seed=st.integers(0, 2**20), p=st.floats(0.2, 0.8),
       k=st.integers(2, 4))
def test_particle_losses_equal_pixel_losses_of_the_reconstruction_2d(shapes, seed, p, k):
    _check_losses(shapes, seed, p, k)


@settings(max_examples=10, deadline=None)
@given(shapes=st.lists(SHAPES_3D, min_size=1, max_size=2), seed=st.integers(0, 2**20), p=st.floats(0.2, 0.8),
       k=st.integers(2, 4))
def test_particle_losses_equal_pixel_losses_of_the_reconstruction_3d(shapes, seed, p, k):
    _check_losses(shapes, seed, p, k)


@pytest.mark.parametrize("shape", [(13, 17), (32, 32), (5, 6, 7), (8, 8, 8)])
def test_counts_are_the_class_pixels_of_each_cell(shape):
    batch = _batch([shape, shape], seed=3, p=0.6)
    assert len(set(batch.level)) > 1
    masks = _masks([shape, shape], 3, seed=4)
    counts = particle_targets(batch, masks, 3)
    assert counts.dtype == torch.float32 and counts.shape == (batch.n_particles, 3)
    for apr, c, m in zip(batch.aprs, batch.split(counts), masks):
        owner = apr.pixel_owner()
        ref = np.zeros((apr.n_particles, 3))
        np.add.at(ref, (owner.ravel(), m.ravel()), 1)
        np.testing.assert_array_equal(c.numpy(), ref)
        # each cell's pixel count is its clipped size: cell_size^d inside the image
        np.testing.assert_array_equal(c.sum(1).numpy(), np.bincount(owner.ravel(), minlength=apr.n_particles))
        assert np.all(c.sum(1).numpy() <= apr.cell_size().astype(np.float64) ** apr.ndim)
    # the reconstruction used by the tests is the APR's own
    x = torch.randn(batch.n_particles, 2)
    rec = x[batch.pixel_owner()]
    split = torch.split(rec, [int(np.prod(shape))] * 2)
    for apr, xi, ri in zip(batch.aprs, batch.split(x), split):
        np.testing.assert_array_equal(apr.reconstruct(xi.numpy()).reshape(-1, 2), ri.numpy())
    # torch masks (bool or integer) give the same counts
    torch.testing.assert_close(particle_targets(batch, [torch.as_tensor(m) for m in masks], 3), counts)


@settings(max_examples=40, deadline=None)
@given(shapes=st.lists(st.one_of(SHAPES_2D, SHAPES_3D), min_size=1, max_size=1), seed=st.integers(0, 2**20),
       p=st.floats(0.2, 0.8), k=st.integers(2, 4), as_bool=st.booleans())
def test_counts_equal_the_owner_map_counts(shapes, seed, p, k, as_bool):
    """The summed-area-table counts equal a per-pixel count through the owner map (the definition),
    for cells clipped at any image border, integer and bool masks."""
    batch = _batch(shapes, seed, p)
    masks = _masks(shapes, 2 if as_bool else k, seed + 1)
    if as_bool:
        masks = [m.astype(bool) for m in masks]
    owner = batch.aprs[0].pixel_owner()
    ref = np.zeros((batch.n_particles, k))
    np.add.at(ref, (owner.ravel(), masks[0].ravel().astype(np.int64)), 1)
    np.testing.assert_array_equal(particle_targets(batch, masks, k, dtype=torch.float64).numpy(), ref)


@pytest.mark.parametrize("shape", [(9, 11), (16, 16), (4, 5, 6)])
def test_one_particle_per_pixel_gives_the_plain_pixel_loss(shape):
    apr = dense_apr(shape)
    assert apr.n_particles == int(np.prod(shape))
    np.testing.assert_array_equal(apr.pixel_owner().ravel(), np.arange(apr.n_particles))  # pixel order
    batch = APRBatch([apr])
    k = 3
    g = torch.Generator().manual_seed(0)
    x = torch.randn(apr.n_particles, k, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.randint(0, k, shape, generator=g)
    counts = particle_targets(batch, [mask], k, dtype=torch.float64)
    pixel_logits = x.T.reshape((1, k) + shape)  # a pixel network's output (B, K, *shape)
    ref = F.cross_entropy(pixel_logits, mask[None])
    got = particle_cross_entropy(x, counts)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_grad(got, x), _grad(ref, x), rtol=1e-12, atol=1e-14)
    z = x[:, :1]
    bmask = mask == 1
    ref = F.binary_cross_entropy_with_logits(z.T.reshape((1, 1) + shape), bmask[None, None].double())
    torch.testing.assert_close(particle_bce_with_logits(z, particle_targets(batch, [bmask], 2, dtype=torch.float64)),
                               ref, rtol=1e-12, atol=1e-12)
    pred = particle_predictions_to_pixels(batch, x)[0]
    torch.testing.assert_close(pred, pixel_logits[0].argmax(0))


def test_mean_reduction_is_the_pixel_unet_loss_of_a_batch_of_equal_images():
    shape, k, b = (12, 10), 3, 3
    batch = _batch([shape] * b, seed=7)
    masks = _masks([shape] * b, k, seed=8)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch.n_particles, k, generator=g, dtype=torch.float64)
    counts = particle_targets(batch, masks, k, dtype=torch.float64)
    rec = x[batch.pixel_owner()].reshape((b,) + shape + (k,)).movedim(-1, 1)  # (B, K, H, W)
    ref = F.cross_entropy(rec, torch.as_tensor(np.stack(masks)))
    torch.testing.assert_close(particle_cross_entropy(x, counts), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(particle_cross_entropy(x, counts, reduction="image_mean", batch=batch), ref,
                               rtol=1e-12, atol=1e-12)
    # images of different sizes: the two reductions differ (pixels vs images weigh equally)
    batch2 = _batch([(4, 4), (20, 20)], seed=9)
    masks2 = [np.zeros((4, 4), int), np.ones((20, 20), int)]
    c2 = particle_targets(batch2, masks2, 2, dtype=torch.float64)
    x2 = torch.zeros(batch2.n_particles, 2, dtype=torch.float64)
    x2[:, 1] = 1.0
    assert not torch.isclose(particle_cross_entropy(x2, c2), particle_cross_entropy(x2, c2, reduction="image_mean",
                                                                                   batch=batch2))


def test_losses_accept_apr_features_and_float32():
    batch = _batch([(10, 10)], seed=1)
    x = torch.randn(batch.n_particles, 2, requires_grad=True)
    counts = particle_targets(batch, [np.eye(10, dtype=int)], 2)
    loss = particle_cross_entropy(APRFeatures(x, batch), counts) + particle_soft_dice_loss(x, counts)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and loss.dtype == torch.float32


# --- metrics ---------------------------------------------------------------------------------------
def test_dice_and_iou_by_hand():
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    true = np.array([[1, 0, 0], [0, 1, 1]])
    # |P| = 3, |T| = 3, |P & T| = 2, |P | T| = 4
    assert dice(pred, true) == pytest.approx(4 / 6)
    assert iou(pred, true) == pytest.approx(2 / 4)
    # torch, bool, 3D
    assert dice(torch.as_tensor(pred, dtype=torch.bool)[None], torch.as_tensor(true)[None]) == pytest.approx(4 / 6)
    # multi-class: classes 0, 1, 2
    p = np.array([0, 1, 1, 2, 2, 2])
    t = np.array([0, 1, 2, 2, 2, 0])
    # class 0: P {0}, T {0, 5}: dice 2/3, iou 1/2; class 1: P {1, 2}, T {1}: 2/3, 1/2; class 2: P {3, 4, 5}, T {2, 3, 4}: 4/6, 2/4
    np.testing.assert_allclose(dice_per_class(p, t, 3), [2 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(iou_per_class(p, t, 3), [1 / 2, 1 / 2, 1 / 2])
    assert dice(p, t, 3) == pytest.approx(2 / 3) and iou(p, t, 3) == pytest.approx(1 / 2)
    p = np.array([1, 1, 1, 2])
    t = np.array([1, 2, 2, 2])
    # class 1: P 3, T 1, both 1: dice 2/4, iou 1/3; class 2: P 1, T 3, both 1: 2/4, 1/3; class 3: empty
    np.testing.assert_allclose(dice_per_class(p, t, 4), [1.0, 0.5, 0.5, 1.0])
    assert dice(p, t, 4) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert dice(p, t, 4, empty=float("nan")) == pytest.approx(0.5)
    assert iou(p, t, 4, empty=float("nan")) == pytest.approx(1 / 3)


@settings(max_examples=30, deadline=None)
@given(shape=st.one_of(SHAPES_2D, SHAPES_3D), k=st.integers(2, 4), seed=st.integers(0, 2**20))
def test_dice_and_iou_equal_the_set_formulas(shape, k, seed):
    rng = np.random.default_rng(seed)
    p, t = rng.integers(0, k, shape), rng.integers(0, k, shape)
    for c in range(k):
        P, T = p == c, t == c
        inter, union = np.sum(P & T), np.sum(P | T)
        want_d = 2 * inter / (P.sum() + T.sum()) if union else 1.0
        want_i = inter / union if union else 1.0
        assert dice_per_class(p, t, k)[c] == pytest.approx(want_d)
        assert iou_per_class(torch.as_tensor(p), torch.as_tensor(t), k)[c] == pytest.approx(want_i)
        # dice = 2 iou / (1 + iou)
        assert dice_per_class(p, t, k)[c] == pytest.approx(2 * want_i / (1 + want_i))
    if k == 2:
        assert dice(p, t) == dice(p, t, 2) == pytest.approx(dice_per_class(p, t, 2)[1])


@pytest.mark.parametrize("shape", [(7, 9), (3, 4, 5)])
def test_perfect_disjoint_and_empty(shape):
    rng = np.random.default_rng(0)
    m = rng.random(shape) < 0.5
    m.flat[0], m.flat[1] = True, False
    for f in (dice, iou):
        assert f(m, m) == 1.0 and f(torch.as_tensor(m), torch.as_tensor(m)) == 1.0
        assert f(m, ~m) == 0.0
        empty = np.zeros(shape, bool)
        assert f(empty, empty) == 1.0  # empty vs empty: nothing to find, nothing found
        assert np.isnan(f(empty, empty, empty=float("nan")))
        assert f(empty, m) == 0.0 and f(m, empty) == 0.0
    labels = rng.integers(0, 3, shape)
    assert dice(labels, labels, 3) == 1.0 and iou(labels, labels, 3) == 1.0


def test_apr_and_pixel_networks_are_scored_on_the_same_ground_truth():
    from aprlib.data import nuclei
    sample = nuclei.generate((48, 40), seed=2)
    apr = aprlib.form_apr(sample.image)
    batch = APRBatch([apr])
    counts = particle_targets(batch, [sample.mask], 2)
    # a particle 'network' that predicts each cell's majority class
    logits = (counts[:, 1:] - counts[:, :1])
    pred = particle_predictions_to_pixels(batch, logits)[0]
    score = dice(pred, sample.mask)
    assert 0.0 <= score <= 1.0
    # the same prediction painted with the APR's own reconstruction, scored as a pixel network's output
    painted = apr.reconstruct((logits[:, 0] > 0).float().numpy()) > 0.5
    assert score == dice(painted, sample.mask) and iou(pred, sample.mask) == iou(painted, sample.mask)


# --- bad inputs -------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    batch = _batch([(8, 8), (6, 5)], seed=0)
    good = [np.zeros((8, 8), int), np.ones((6, 5), int)]
    with pytest.raises(ValueError, match=r"mask 1 has shape \(5, 6\).*APR 1 has shape \(6, 5\)"):
        particle_targets(batch, [good[0], np.zeros((5, 6), int)], 2)
    with pytest.raises(ValueError, match="got 1 masks for a batch of 2 APRs"):
        particle_targets(batch, good[:1], 2)
    with pytest.raises(ValueError, match="single 2D array"):
        particle_targets(APRBatch([batch[0]]), good[0], 2)
    with pytest.raises(ValueError, match=r"mask 0 has labels in \[3, 3\], outside \[0, 3\)"):
        particle_targets(batch, [np.full((8, 8), 3), good[1]], 3)
    with pytest.raises(ValueError, match=r"mask 1 has labels in \[-1, -1\]"):
        particle_targets(batch, [good[0], -np.ones((6, 5), int)], 3)
    with pytest.raises(TypeError, match="mask 0 must hold integer class labels"):
        particle_targets(batch, [good[0].astype(float), good[1]], 2)
    with pytest.raises(ValueError, match="pass n_classes=2"):
        particle_targets(batch, good, 1)
    with pytest.raises(TypeError, match="n_classes must be an integer"):
        particle_targets(batch, good, 2.0)
    counts = particle_targets(batch, good, 2)
    n = batch.n_particles
    with pytest.raises(ValueError, match=r"class count mismatch: logits of 3 classes need counts \(N, 3\)"):
        particle_cross_entropy(torch.zeros(n, 3), counts)
    with pytest.raises(ValueError, match="use particle_bce_with_logits"):
        particle_cross_entropy(torch.zeros(n, 1), counts)
    with pytest.raises(ValueError, match="use particle_cross_entropy"):
        particle_bce_with_logits(torch.zeros(n, 2), counts)
    with pytest.raises(ValueError, match=r"class count mismatch: one sigmoid logit needs the binary counts \(N, 2\)"):
        particle_bce_with_logits(torch.zeros(n, 1), particle_targets(batch, good, 3))
    with pytest.raises(ValueError, match=f"particle count mismatch: logits have {n + 1} rows but counts have {n}"):
        particle_cross_entropy(torch.zeros(n + 1, 2), counts)
    with pytest.raises(ValueError, match="reduction must be one of"):
        particle_cross_entropy(torch.zeros(n, 2), counts, reduction="avg")
    with pytest.raises(ValueError, match="needs the batch"):
        particle_cross_entropy(torch.zeros(n, 2), counts, reduction="image_mean")
    with pytest.raises(ValueError, match="needs the batch"):
        particle_soft_dice_loss(torch.zeros(n, 2), counts, per_image=True)
    with pytest.raises(ValueError, match=r"weight must be \(K,\)"):
        particle_cross_entropy(torch.zeros(n, 2), counts, weight=torch.ones(3))
    with pytest.raises(ValueError, match=f"logits must have N = {n} rows"):
        particle_predictions_to_pixels(batch, torch.zeros(n - 1, 2))
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(ValueError, match=r"pred has labels in \[0, 2\].*pass n_classes"):
        dice(np.array([0, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"true has labels in \[0, 5\], outside \[0, 3\)"):
        iou(np.array([0, 2]), np.array([0, 5]), 3)
    with pytest.raises(TypeError, match="pred must hold integer class labels"):
        dice(np.array([0.0, 1.0]), np.array([0, 1]))


def test_cost_canvases_share_one_intensity_map():
    """The cost runs normalise every canvas with one reference map, so a canvas's intensities do not
    depend on its size; a canvas's own percentiles are used only with normalise='canvas'."""
    import numpy as np

    from aprbook.segmentation import _normalise, make_set, reference_intensity_map
    imap = reference_intensity_map(2)
    assert imap == reference_intensity_map(2) and imap[0] < imap[1]
    small = make_set((32, 32), [(0, 2, 32)], n_objects=1, radius_range=(3.0, 5.0), low_noise=True, intensity_map=imap)
    big = make_set((64, 64), [(0, 2, 64)], n_objects=1, radius_range=(3.0, 5.0), low_noise=True, intensity_map=imap)
    # background near 0 on both canvases, whatever their size
    for d in (small, big):
        bg = d.images[0][~d.masks[0]]
        assert abs(float(np.median(bg))) < 0.1
    raw = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    assert np.allclose(_normalise(raw, (0.0, 0.5)), raw * 2)
    with pytest.raises(ValueError, match="intensity_map"):
        _normalise(raw, (1.0, 1.0))
    with pytest.raises(ValueError, match="normalise"):
        from aprbook.segmentation import step_cost_vs_size
        step_cost_vs_size(2, [16], normalise="per-image")
