"""Natural images (thesis 4.2): the Kaggle Dogs-vs-Cats training folder, the thesis's augmentation,
and an offline stand-in built from the photographs and textures bundled with scikit-image.

Images are float32 RGB arrays ``(H, W, 3)`` in [0, 1]; datasets have ``image(i)`` returning
``(image, label)`` like :class:`aprlib.synthetic.SyntheticShapes`, so the training code treats them
alike. Augmentation is drawn from ``numpy.random.default_rng([seed, epoch, i])``: an item looks the
same in every process (DataLoader workers) and in a resumed run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

__all__ = ["DOGS_VS_CATS_CLASSES", "dogs_vs_cats_files", "split_files", "load_rgb", "augment", "ImageFiles",
           "STAND_IN_SOURCES", "StandInPatches", "stand_in_photographs"]

DOGS_VS_CATS_CLASSES = ("cat", "dog")
_DVC_NAME = re.compile(r"^(cat|dog)\.(\d+)\.jpe?g$", re.IGNORECASE)


def dogs_vs_cats_files(data_dir) -> list[tuple[Path, int]]:
    """``(path, label)`` of every ``cat.N.jpg`` / ``dog.N.jpg`` in the Kaggle training folder
    (label 0 cat, 1 dog), sorted by class and N. Other files are ignored."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Dogs-vs-Cats folder {root} does not exist (see README: natural images)")
    found = []
    for p in root.iterdir():
        m = _DVC_NAME.match(p.name)
        if m and p.is_file():
            found.append((DOGS_VS_CATS_CLASSES.index(m.group(1).lower()), int(m.group(2)), p))
    if not found:
        raise ValueError(f"no cat.N.jpg / dog.N.jpg files in {root}")
    return [(p, label) for label, _, p in sorted(found)]


def split_files(files: list, n_val: int = 1000, seed: int = 0) -> tuple[list, list]:
    """Random split into (train, validation) with ``n_val`` validation items (thesis: 24000 / 1000
    of the 25000 training images)."""
    if not 0 < n_val < len(files):
        raise ValueError(f"n_val must be in (0, {len(files)}), got {n_val}")
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in sorted(order[n_val:])], [files[i] for i in sorted(order[:n_val])]


def load_rgb(path, size: int = 256) -> np.ndarray:
    """Read an image file as RGB and resize it to ``size`` x ``size`` (bilinear): float32 (size, size, 3)."""
    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32) / 255.0


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The thesis's training augmentation (4.2.4) of an RGB image (H, W, 3) in [0, 1]: one of
    rotation (at most 30 degrees), brightness and contrast each scaled by a factor in [0.8, 1.2],
    or translation (at most 5% of the size) with scaling (0.9-1.1), chosen uniformly; then a
    horizontal flip with probability 0.5. Uncovered pixels are black. Returns float32 (H, W, 3)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"augment expects an RGB image (H, W, 3), got shape {img.shape}")
    im = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    w, h = im.size
    choice = int(rng.integers(3))
    if choice == 0:
        im = im.rotate(float(rng.uniform(-30, 30)), resample=Image.BILINEAR)
    elif choice == 1:
        im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.8, 1.2)))
        im = ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.8, 1.2)))
    else:
        s = float(rng.uniform(0.9, 1.1))
        tx, ty = rng.uniform(-0.05, 0.05, 2) * (w, h)
        cx, cy = w / 2, h / 2
        # output (x, y) samples input ((x - cx - tx) / s + cx, (y - cy - ty) / s + cy)
        im = im.transform((w, h), Image.AFFINE, (1 / s, 0, cx - (cx + tx) / s, 0, 1 / s, cy - (cy + ty) / s),
                          resample=Image.BILINEAR)
    out = np.asarray(im, dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


@dataclass
class ImageFiles:
    """A labelled list of image files, resized to ``size`` x ``size``; ``augmented(epoch)`` gives the
    view with the thesis's augmentation for one epoch."""

    files: list
    size: int = 256
    seed: int = 0
    epoch: int | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.files], dtype=np.int64)

    def augmented(self, epoch: int) -> "ImageFiles":
        return ImageFiles(self.files, self.size, self.seed, epoch)

    def image(self, i: int) -> tuple[np.ndarray, int]:
        path, label = self.files[i]
        img = load_rgb(path, self.size)
        if self.epoch is not None:
            img = augment(img, np.random.default_rng([self.seed, self.epoch, i]))
        return img, int(label)


# --- the offline stand-in ------------------------------------------------------------------------
#: scikit-image's bundled natural photographs and textures used as the stand-in's classes (all ship
#: inside the scikit-image wheel; none is fetched from the network).
STAND_IN_SOURCES = ("astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel",
                    "hubble_deep_field", "moon", "motorcycle", "retina", "rocket")


def stand_in_photographs(short_side: int = 512) -> dict[str, np.ndarray]:
    """The stand-in's source images as float32 RGB (grey ones replicated), resized (bilinear) so
    that the short side is ``short_side`` pixels."""
    from skimage import data
    out = {}
    for name in STAND_IN_SOURCES:
        img = np.asarray(data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        im = Image.fromarray(img[..., :3].astype(np.uint8))
        k = short_side / min(im.size)
        im = im.resize((round(im.size[0] * k), round(im.size[1] * k)), Image.BILINEAR)
        out[name] = np.asarray(im, dtype=np.float32) / 255.0
    return out


class StandInPatches:
    """Stand-in classification task: which of the :data:`STAND_IN_SOURCES` photographs a square
    patch comes from. Patches of ``crop`` pixels are cut from the left ``train_fraction`` of each
    photograph for ``split='train'`` and from the rest for ``split='val'`` (disjoint pixels), then
    resized to ``size`` x ``size``. Item ``i`` has label ``i % n_classes`` and a position drawn from
    ``default_rng([seed, split, i])``; ``augmented(epoch)`` adds the thesis's augmentation."""

    def __init__(self, n: int, split: str = "train", seed: int = 0, size: int = 256, crop: int = 192,
                 train_fraction: float = 0.6, epoch: int | None = None, _photos=None):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        self.n, self.split, self.seed, self.size, self.crop = int(n), split, int(seed), int(size), int(crop)
        self.train_fraction, self.epoch = float(train_fraction), epoch
        self.photos = _photos if _photos is not None else stand_in_photographs()
        self.names = list(self.photos)
        for name, img in self.photos.items():
            h, w, _ = img.shape
            cut = int(w * self.train_fraction)
            if min(h, cut, w - cut) < self.crop:
                raise ValueError(f"{name} ({h}x{w}) is too small for {self.crop}-pixel patches in both splits")

    @property
    def n_classes(self) -> int:
        return len(self.names)

    @property
    def labels(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64) % self.n_classes

    def __len__(self) -> int:
        return self.n

    def augmented(self, epoch: int) -> "StandInPatches":
        return StandInPatches(self.n, self.split, self.seed, self.size, self.crop, self.train_fraction, epoch,
                              _photos=self.photos)

    def image(self, i: int) -> tuple[np.ndarray, int]:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} patches")
        label = i % self.n_classes
        img = self.photos[self.names[label]]
        h, w, _ = img.shape
        cut = int(w * self.train_fraction)
        x0, x1 = (0, cut) if self.split == "train" else (cut, w)
        rng = np.random.default_rng([self.seed, 0 if self.split == "train" else 1, i])
        y = int(rng.integers(0, h - self.crop + 1))
        x = int(rng.integers(x0, x1 - self.crop + 1))
        patch = Image.fromarray((img[y:y + self.crop, x:x + self.crop] * 255 + 0.5).astype(np.uint8))
        out = np.asarray(patch.resize((self.size, self.size), Image.BILINEAR), dtype=np.float32) / 255.0
        if self.epoch is not None:
            out = augment(out, np.random.default_rng([self.seed, self.epoch, i]))
        return out, label
