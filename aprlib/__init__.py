"""aprlib: the Adaptive Particle Representation and APRNet layers, with C++ kernels."""
from .apr import APR
from .batch import APRBatch, collate_aprs
from .formation import APRParameters, form_apr

__version__ = "0.1.0"
__all__ = ["APR", "APRBatch", "APRParameters", "collate_aprs", "form_apr"]
