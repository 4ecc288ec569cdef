"""``InMemory``: a dataset's items rendered once and held as tensors."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from .._checks import check_int, describe
from ._util import check_index


class InMemory(Dataset):
    """Every item of ``dataset`` read once and kept: the synthetic datasets draw an item anew
    on every read (MultiDigit composes its canvas, RandomBits its bits), which a run of many
    epochs, or several runs over the same items, need not pay again. Items come back as the
    base dataset gives them: ``(image, labels)`` with labels a tensor or a dict of tensors.
    Memory: the images' size in full (a 112x112 grey canvas is 49 KiB in float32)."""

    def __init__(self, dataset, *, batch_size: int = 512, num_workers: int = 0):
        batch_size, num_workers = check_int("batch_size", batch_size, 1), check_int("num_workers", num_workers, 0)
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"dataset: expected a dataset with __len__ and __getitem__, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("dataset: expected at least one item, got an empty dataset")
        images, labels = [], []
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                collate_fn=_collate):
            # a batch of two bare images unpacked as (images, labels), silently
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise ValueError(f"dataset: expected (image, labels) items, got batches of {describe(batch)}")
            images.append(batch[0])
            labels.append(batch[1])
        try:
            self.images = torch.cat(images)
            if isinstance(labels[0], dict):
                self.labels = {k: torch.cat([torch.as_tensor(part[k]) for part in labels]) for k in labels[0]}
            else:
                self.labels = torch.cat([torch.as_tensor(part) for part in labels])
        except (RuntimeError, TypeError, ValueError, KeyError) as exc:
            raise _unstackable(exc) from exc

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        index = check_index(index, len(self))  # as every dataset: no negative index, no slice
        if isinstance(self.labels, dict):
            return self.images[index], {k: v[index] for k, v in self.labels.items()}
        return self.images[index], self.labels[index]


def _collate(items):
    """default_collate, whose own errors (items of mixed sizes, string labels) name nothing;
    errors of the dataset's own __getitem__ pass as they are."""
    try:
        return default_collate(items)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise _unstackable(exc) from exc


def _unstackable(exc: Exception) -> ValueError:
    return ValueError(f"dataset: its items could not be kept as one tensor of images and tensors of labels "
                      f"({type(exc).__name__}: {exc}); expected images of one shape (ImageFolder and NaturalImages: "
                      f"pass size=) and numeric labels with the same keys, in (image, labels) items")
