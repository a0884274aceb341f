"""Optional cross-check against LibAPR through its Python wrapper ``pyapr`` (pyapr==1.0.7).

aprlib never needs pyapr; tests, the benchmark and the book use it to compare with LibAPR.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from aprlib.apr import APRParameters

__all__ = ["available", "pyapr_parameters", "pyapr_form"]


def available() -> bool:
    """True if pyapr can be imported."""
    try:
        import pyapr  # noqa: F401
    except ImportError:
        return False
    return True


def pyapr_parameters(params: APRParameters):
    """pyapr.APRParameters equal to ``params`` (automatic parameters off). ``sigma_th`` must be a
    number (pyapr has no relative default): ``params.for_image(image)`` gives the one aprlib uses."""
    import pyapr
    if params.pulling_scheme != "libapr":
        raise ValueError("pyapr only implements pulling_scheme='libapr'")
    if params.sigma_th is None:
        raise ValueError("sigma_th is None (aprlib's default, a fraction of each image's range), which pyapr "
                         "has no equivalent of: pass params.for_image(image), or APRParameters.libapr() for "
                         "pyapr's own defaults")
    p = pyapr.APRParameters()
    p.auto_parameters = False
    p.rel_error = params.rel_error
    p.gradient_smoothing = params.gradient_smoothing
    p.sigma_th = params.sigma_th
    p.sigma_th_max = params.sigma_th_max
    p.grad_th = params.grad_th
    p.Ip_th = params.Ip_th
    return p


def pyapr_form(image, params: APRParameters):
    """Form the APR of a 2D image with pyapr; returns (pyapr.APR, particles, (H, W) level map).
    A ``sigma_th`` of None takes the value aprlib's form_apr uses (:meth:`APRParameters.for_image`)."""
    import pyapr
    img = np.ascontiguousarray(image, dtype=np.float32)
    with contextlib.redirect_stdout(io.StringIO()):  # pyapr prints parameter warnings
        apr, parts = pyapr.converter.get_apr(img, params=pyapr_parameters(params.for_image(img)))
    levels = np.asarray(pyapr.reconstruction.reconstruct_level(apr))[0]
    return apr, parts, levels
