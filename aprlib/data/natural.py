"""Natural images (thesis 4.2): the Kaggle Dogs-vs-Cats training folder, the thesis's augmentation,
and an offline stand-in built from the photographs and textures bundled with scikit-image.

Images are float32 RGB arrays ``(H, W, 3)`` in [0, 1]; datasets have ``image(i)`` returning
``(image, label)`` like :class:`aprlib.data.synthetic.SyntheticShapes`, so the training code treats them
alike. Augmentation is drawn from ``numpy.random.default_rng([seed, epoch, i])``: an item looks the
same in every process (DataLoader workers) and in a resumed run.

Image files (:func:`load_rgb`): 8-bit images are divided by 255 and 16-bit ones by 65535, so both
span [0, 1]; an alpha channel is composited onto black; a file that cannot be read (missing,
truncated, corrupt, unsupported) raises :class:`ImageReadError` naming it, which
:class:`ImageFiles` raises or, with ``on_error="skip"``, skips.
"""
from __future__ import annotations

import math
import numbers
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DOGS_VS_CATS_CLASSES", "dogs_vs_cats_files", "split_files", "load_rgb", "augment", "ImageFiles",
           "ImageReadError", "STAND_IN_SOURCES", "StandInPatches", "stand_in_photographs"]

DOGS_VS_CATS_CLASSES = ("cat", "dog")
_DVC_NAME = re.compile(r"^(cat|dog)\.(\d+)\.jpe?g$", re.IGNORECASE)


def dogs_vs_cats_files(data_dir) -> list[tuple[Path, int]]:
    """``(path, label)`` of every ``cat.N.jpg`` / ``dog.N.jpg`` in the Kaggle training folder
    (label 0 cat, 1 dog), sorted by class and N. Other files are ignored. Raises FileNotFoundError for a
    missing folder, NotADirectoryError for a file (such as the unextracted ``train.zip``) and ValueError
    for a folder without such files."""
    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"Dogs-vs-Cats data {root} is a file, not a folder: pass the folder that holds "
                                 f"cat.N.jpg and dog.N.jpg (unzip Kaggle's train.zip first; book/guide.md, "
                                 f"'Natural images')")
    if not root.is_dir():
        raise FileNotFoundError(f"Dogs-vs-Cats folder {root} does not exist (book/guide.md, 'Natural images')")
    found = []
    for p in root.iterdir():
        m = _DVC_NAME.match(p.name)
        if m and p.is_file():
            found.append((DOGS_VS_CATS_CLASSES.index(m.group(1).lower()), int(m.group(2)), p))
    if not found:
        raise ValueError(f"no cat.N.jpg / dog.N.jpg files in {root}")
    return [(p, label) for label, _, p in sorted(found)]


def _integer(value, name: str, minimum: int) -> int:
    """An integer (Python or numpy, not bool) >= minimum."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def split_files(files: list, n_val: int = 1000, seed: int = 0) -> tuple[list, list]:
    """Random split into (train, validation) with ``n_val`` validation items (thesis: 24000 / 1000
    of the 25000 training images)."""
    n_val = _integer(n_val, "n_val", 0)
    seed = _integer(seed, "seed", 0)
    if not 0 < n_val < len(files):
        raise ValueError(f"n_val must be in (0, {len(files)}), got {n_val}")
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in sorted(order[n_val:])], [files[i] for i in sorted(order[:n_val])]


class ImageReadError(OSError):
    """An image file that cannot be read: missing, truncated, corrupt or of an unsupported kind.
    The message starts with the file's path, also in ``path``."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _has_alpha(im: Image.Image) -> bool:
    return "A" in im.getbands() or "a" in im.getbands() or (im.mode == "P" and "transparency" in im.info)


def _to_rgb(im: Image.Image, size: int) -> np.ndarray:
    """An opened PIL image as float32 RGB (size, size, 3) in [0, 1] (see load_rgb)."""
    from PIL import Image
    if im.mode in _SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
        grey = np.asarray(im).astype(np.float32)
        if im.mode == "F":
            if not np.isfinite(grey).all() or grey.min() < 0 or grey.max() > 1:
                raise ValueError("float (mode F) image with values outside [0, 1]: not supported")
        elif im.mode == "I" and (grey.min() < 0 or grey.max() > 65535):
            raise ValueError("32-bit integer (mode I) image with values outside the 16-bit range: not supported")
        else:  # 16-bit greyscale (PNG, TIFF): its full range is 0..65535
            grey /= 65535.0
        grey = np.asarray(Image.fromarray(grey).resize((size, size), Image.BILINEAR), dtype=np.float32)
        return np.ascontiguousarray(np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2))
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    im = im.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def load_rgb(path, size: int = 256) -> np.ndarray:
    """Read an image file as RGB and resize it to ``size`` x ``size`` (bilinear): float32 (size, size, 3)
    in [0, 1].

    8-bit images (JPEG, PNG, palette, greyscale, CMYK) are divided by 255; 16-bit greyscale images
    (PNG, TIFF; PIL modes ``I;16*``, or ``I`` with values within 0..65535) by 65535, so they span
    [0, 1] too (16-bit colour PNGs are read by PIL as 8-bit RGB). Greyscale is replicated into the
    three channels. Images with an alpha channel (RGBA, LA, palette with transparency) are
    composited onto black, the colour the augmentation gives uncovered pixels and the APR
    convolution's padding outside the image: a fully opaque image is unchanged.

    Raises ImageReadError (an OSError) whose message starts with the file's path when the file is
    missing, truncated, corrupt or of an unsupported kind (float images outside [0, 1], 32-bit
    integer images beyond 16 bits).
    """
    from PIL import Image
    size = _integer(size, "size", 1)
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here
            return _to_rgb(im, size)
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
        raise ImageReadError(path, f"cannot read image ({type(e).__name__}: {e})") from e


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The thesis's training augmentation (4.2.4) of an RGB image (H, W, 3) in [0, 1]: one of
    rotation (at most 30 degrees), brightness and contrast each scaled by a factor in [0.8, 1.2],
    or translation (at most 5% of the size) with scaling (0.9-1.1), chosen uniformly; then a
    horizontal flip with probability 0.5. Uncovered pixels are black. Returns float32 (H, W, 3).
    The image is quantised to 8 bits on the way (PIL); values outside [0, 1] or NaN raise ValueError."""
    from PIL import Image, ImageEnhance
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"augment expects a real-valued image, got dtype {arr.dtype}")
    img = arr.astype(np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"augment expects an RGB image (H, W, 3), got shape {img.shape}")
    if img.size == 0:
        raise ValueError(f"augment expects a non-empty image, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("augment expects finite values in [0, 1]; the image contains NaN or infinite values")
    lo, hi = float(img.min()), float(img.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"augment expects values in [0, 1], got [{lo:.4g}, {hi:.4g}]")
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
    """A labelled list of ``(path, label)`` image files, resized to ``size`` x ``size``;
    ``augmented(epoch)`` gives the view with the thesis's augmentation for one epoch.

    ``on_error``: what ``image(i)`` does with a file that cannot be read (:func:`load_rgb`):
    ``"raise"`` (default) raises its ImageReadError, which names the file; ``"skip"`` warns with the
    file's name and returns the next readable file (i + 1, i + 2, ..., wrapping around) with that
    file's label, so a long run survives a few damaged files (``labels`` still lists the label of
    every file as given)."""

    files: list
    size: int = 256
    seed: int = 0
    epoch: int | None = None
    on_error: str = "raise"

    def __post_init__(self):
        if isinstance(self.files, (str, bytes, Path)) or not hasattr(self.files, "__len__"):
            raise TypeError(f"files must be a list of (path, label) pairs, got {type(self.files).__name__}")
        for k, item in enumerate(self.files):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"files[{k}] must be a (path, label) pair, got {item!r}")
            label = item[1]
            if isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral) or label < 0:
                raise ValueError(f"files[{k}] has label {label!r}: labels must be non-negative integers")
        self.size = _integer(self.size, "size", 1)
        self.seed = _integer(self.seed, "seed", 0)
        if self.epoch is not None:
            self.epoch = _integer(self.epoch, "epoch", 0)
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.files], dtype=np.int64)

    def augmented(self, epoch: int) -> "ImageFiles":
        return ImageFiles(self.files, self.size, self.seed, epoch, self.on_error)

    def image(self, i: int) -> tuple[np.ndarray, int]:
        n = len(self.files)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} files")
        i = int(i) % n
        for step in range(n):
            path, label = self.files[(i + step) % n]
            try:
                img = load_rgb(path, self.size)
            except ImageReadError as e:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"ImageFiles: skipping unreadable file ({e}); item {i} uses the next readable file",
                              RuntimeWarning, stacklevel=2)
                continue
            if self.epoch is not None:
                img = augment(img, np.random.default_rng([self.seed, self.epoch, i]))
            return img, int(label)
        raise ImageReadError(self.files[i][0], f"none of the {n} files of this ImageFiles can be read")


# --- the offline stand-in ------------------------------------------------------------------------
#: scikit-image's bundled natural photographs and textures used as the stand-in's classes (all ship
#: inside the scikit-image wheel; none is fetched from the network).
STAND_IN_SOURCES = ("astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel",
                    "hubble_deep_field", "moon", "motorcycle", "retina", "rocket")


def stand_in_photographs(short_side: int = 512) -> dict[str, np.ndarray]:
    """The stand-in's source images as float32 RGB (grey ones replicated), resized (bilinear) so
    that the short side is ``short_side`` pixels."""
    from PIL import Image
    short_side = _integer(short_side, "short_side", 1)
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
        n, seed = _integer(n, "n", 0), _integer(seed, "seed", 0)
        size, crop = _integer(size, "size", 1), _integer(crop, "crop", 1)
        if epoch is not None:
            epoch = _integer(epoch, "epoch", 0)
        if isinstance(train_fraction, bool) or not isinstance(train_fraction, numbers.Real) or \
                not (math.isfinite(train_fraction) and 0 < train_fraction < 1):
            raise ValueError(f"train_fraction must be a number in (0, 1), got {train_fraction!r}")
        self.n, self.split, self.seed, self.size, self.crop = n, split, seed, size, crop
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
        from PIL import Image
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
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
