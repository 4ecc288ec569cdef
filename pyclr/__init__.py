"""pyclr: fused C++/CUDA contrastive losses and the experiments of the contrastive-learning papers."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pyclr")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

from . import analysis, cluster, evaluate, losses, models, render, train  # pyclr.train(...): a callable module
from ._ops import build_info

__all__ = ["__version__", "analysis", "build_info", "cluster", "evaluate", "losses", "models", "render", "train"]
