"""Memory of APRNet feature maps against pixel feature maps (thesis 4.3.1, Fig 4.12).

``feature_map_sizes`` counts, as the thesis does, the elements of every layer input (convolution
and pooling inputs) of a network, for the APR (particles x channels of each real, pooled APR
structure) and for pixels (height x width x channels). ``measure_peak`` runs an actual forward +
backward pass in a fresh subprocess and reports its peak resident memory above the memory held
before the pass (model, input and index tables already built).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from aprlib.apr import APR
from aprlib.models import VGG16_CFG

__all__ = ["feature_map_sizes", "measure_peak"]


def feature_map_sizes(apr: APR, cfg=VGG16_CFG, in_channels: int = 1) -> dict:
    """Elements of all layer inputs of a VGG-style ``cfg`` (ints: 3x3 conv output channels, 'M':
    2x2 max pooling) for the APR and for its pixel image. Returns totals and per-layer lists."""
    H, W = apr.shape
    c = in_channels
    apr_sizes, pix_sizes, names = [], [], []
    cur = apr
    for i, v in enumerate(cfg):
        apr_sizes.append(cur.n_particles * c)
        pix_sizes.append(H * W * c)
        if v == "M":
            names.append(f"pool{i}")
            cur = cur.pooled()[0]
            H, W = H // 2, W // 2
        else:
            names.append(f"conv{i}")
            c = v
    return {"layers": names, "apr": apr_sizes, "pixels": pix_sizes, "apr_total": int(sum(apr_sizes)),
            "pixel_total": int(sum(pix_sizes)), "relative": sum(apr_sizes) / sum(pix_sizes),
            "input_cr": apr.computational_ratio}


_CHILD = r"""
import json, resource, sys
import numpy as np, torch
import aprlib
from aprlib.models import vgg16_features
from aprlib.nn.prepare import prepare
from aprlib.train import InputSpec

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024

mode, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
img = np.load(path)
if mode == "apr":
    net = vgg16_features(apr=True, in_channels=1)
    batch = aprlib.APRBatch([InputSpec().form(img)])
    prepare(batch, net, in_channels=1)
    inp = aprlib.APRFeatures.from_batch(batch)
    run = lambda: net(inp).features
else:
    net = vgg16_features(apr=False, in_channels=1)
    inp = torch.from_numpy(img)[None, None]
    run = lambda: net(inp)
before = rss_kb()
out = run()
out.sum().backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mode": mode, "rss_before_kb": before, "peak_kb": peak, "extra_peak_kb": peak - before}))
"""


def measure_peak(image: np.ndarray, mode: str, threads: int = 1) -> dict:
    """Peak resident memory (kB) of one forward + backward pass of the APR (``mode='apr'``) or
    pixel (``'pixel'``) VGG16 feature extractor on a grayscale image, in a fresh subprocess;
    ``extra_peak_kb`` is the peak above the memory held just before the pass (Linux)."""
    if mode not in ("apr", "pixel"):
        raise ValueError(f"mode must be 'apr' or 'pixel', got {mode!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.npy"
        np.save(path, np.asarray(image, dtype=np.float32))
        res = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path), str(threads)], capture_output=True,
                             text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory measurement failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # pragma: no cover - a quick manual check
    from aprlib.data.synthetic import object_canvas
    from aprlib.train import InputSpec
    for n in (1, 4, 16):
        img = object_canvas(n, seed=n)
        print(n, {m: measure_peak(img, m)["extra_peak_kb"] for m in ("apr", "pixel")},
              feature_map_sizes(InputSpec().form(img))["relative"])
