"""Data: the six-class synthetic shapes and the object canvases (:mod:`.synthetic`) and natural
images (:mod:`.natural`: the Dogs-vs-Cats loader and augmentation, the scikit-image stand-in).
Import the modules themselves (``from aprlib.data.synthetic import generate_batch``): this package
imports neither, so that ``import aprlib.data`` loads no image library."""
