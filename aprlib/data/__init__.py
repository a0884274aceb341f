"""Data: the six-class synthetic shapes and the object canvases (:mod:`.synthetic`), synthetic
fluorescence microscopy of nuclei and shells in 2D and 3D with ground-truth masks (:mod:`.nuclei`,
for segmentation and the APR benchmarks; uses scipy.ndimage), StarDist's sample image and volume with
their labels (:mod:`.stardist_samples`: real microscopy with ground truth; uses tifffile) and natural images (:mod:`.natural`:
the Dogs-vs-Cats loader and augmentation, the scikit-image stand-in).
Import the modules themselves (``from aprlib.data.synthetic import generate_batch``,
``from aprlib.data.nuclei import generate``): this package imports none of them, so that
``import aprlib.data`` loads no image library."""
