"""Analyses of learned representations: Hermann et al.'s channel preference and
hierarchically constrained similarity, PCA of a layer, and Purushwalkam & Gupta's invariance."""
from .invariance import Invariance, invariance_score
from .pca import PCAEmbedding, pca_embedding
from .similarity import (ChannelPreference, ChannelProbes, HierarchicalSimilarity, channel_preference,
                         channel_probes, hierarchical_similarity)

__all__ = ["channel_probes", "channel_preference", "hierarchical_similarity", "pca_embedding",
           "invariance_score", "ChannelProbes", "ChannelPreference", "HierarchicalSimilarity",
           "PCAEmbedding", "Invariance"]
