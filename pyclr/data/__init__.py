"""Data: the papers' controlled datasets, real-data loaders (offline first) and batched
augmentations (``pyclr.data.augment``)."""
