import pytest
import torch
from torch.utils.data import Dataset

from pyclr.data import InMemory


class Counting(Dataset):
    """Items built on every read, counting the reads."""

    def __init__(self, n, named):
        self.n, self.named, self.reads = n, named, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        image = torch.full((1, 3, 3), float(i))
        return image, ({"label": i % 3, "digits": torch.tensor([i, -1])} if self.named else i % 3)


@pytest.mark.parametrize("named", [True, False])
def test_items_equal_the_base_and_are_read_once(named):
    base = Counting(10, named)
    held = InMemory(base, batch_size=4)
    assert base.reads == 10 and len(held) == 10
    for i in range(10):
        image, labels = held[i]
        want_image, want_labels = base[i]
        assert torch.equal(image, want_image)
        if named:
            assert labels["label"].item() == want_labels["label"] and torch.equal(labels["digits"], want_labels["digits"])
        else:
            assert labels.item() == want_labels
    assert base.reads == 20  # the checks above, not the held dataset


def test_indices_are_checked_as_every_dataset_checks_them():
    held = InMemory(Counting(4, False))
    for index, error in ((-1, IndexError), (4, IndexError), (True, TypeError), (slice(0, 2), TypeError)):
        with pytest.raises(error, match="index: expected"):  # -1 and slices were taken as tensor indexing
            held[index]


def test_empty_and_bad_arguments():
    with pytest.raises(ValueError, match="dataset: expected at least one item"):
        InMemory(Counting(0, False))
    with pytest.raises(ValueError, match="batch_size"):
        InMemory(Counting(3, False), batch_size=0)
    for bad in (5, None):  # "object of type 'int' has no len()" from inside the DataLoader
        with pytest.raises(TypeError, match=f"dataset: expected a dataset with __len__ and __getitem__, got "
                                            f"{type(bad).__name__}"):
            InMemory(bad)


@pytest.mark.parametrize("items", [
    [(torch.zeros(3, 4, 4), 0), (torch.zeros(3, 5, 4), 1)],  # ImageFolder without size=
    [(torch.zeros(3, 4, 4), {"label": 0, "name": "a"})] * 2,  # a string label
    [(torch.zeros(3, 4, 4), None)] * 2,
])
def test_items_that_do_not_stack_are_named(items):
    # collate's and cat's own errors ('stack expects each tensor to be equal size', 'too many
    # dimensions 'str'', 'too many values to unpack') named no argument
    with pytest.raises(ValueError, match=r"dataset: its items could not be kept as one tensor of images .* "
                                         r"expected images of one shape \(ImageFolder and NaturalImages: pass size=\)"):
        InMemory(items)


def test_bare_images_are_not_unpacked_as_images_and_labels():
    with pytest.raises(ValueError, match=r"dataset: expected \(image, labels\) items, got batches of Tensor"):
        InMemory([torch.zeros(3, 4, 4)] * 2)  # the batch of two was unpacked as (images, labels), silently


def test_the_datasets_own_errors_pass_as_they_are():
    class Broken(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise KeyError("label")

    with pytest.raises(KeyError, match="label"):
        InMemory(Broken())
