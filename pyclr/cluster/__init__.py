"""Per-pixel clustering (SPEC.md section 3): K-Means on the fused ``kmeans_step`` kernels (or
scikit-learn, faiss, the plain-PyTorch reference), Ward and bisecting K-Means, the raw-pixel
baseline. ``reference`` holds the plain-PyTorch ``kmeans_step``."""
from . import reference
from .alternatives import bisecting, ward
from .kmeans import BACKENDS, INITS, MODES, ClusterResult, kmeans, pixel_features, raw_pixel_kmeans

__all__ = ["BACKENDS", "INITS", "MODES", "ClusterResult", "bisecting", "kmeans", "pixel_features",
           "raw_pixel_kmeans", "reference", "ward"]
