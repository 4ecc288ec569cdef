"""Evaluation of frozen representations: linear probe, k-NN monitor, decodability."""
from .decodability import decodability
from .features import extract_features, layer_activations
from .knn import knn_accuracy
from .probe import ProbeResult, linear_probe

__all__ = ["linear_probe", "ProbeResult", "knn_accuracy", "decodability", "extract_features", "layer_activations"]
