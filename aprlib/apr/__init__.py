"""The APR: its structure (particle cells per level, their tree; :mod:`.structure`, which also owns
the index tables cached per APR), batches of APRs (:mod:`.batch`) and APR formation from an image
(:mod:`.formation`)."""
from .batch import APRBatch, collate_aprs
from .formation import THESIS_FORMATION, APRParameters, as_float_image, form_apr, to_grayscale
from .structure import APR, apr_children, apr_neighbours, apr_pooled, top_level

__all__ = ["APR", "APRBatch", "collate_aprs", "APRParameters", "THESIS_FORMATION", "form_apr", "as_float_image",
           "to_grayscale", "apr_children", "apr_neighbours", "apr_pooled", "top_level"]
