"""pyclr.train.train_supervised: the supervised baseline learns, takes bare, dict, set and
several labels, and rejects bad arguments by name."""
import pytest
import torch

from pyclr.models import SmallConvNet
from pyclr.train import SupervisedResult, train_supervised

SIDE = 8


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The 8x8 problems are too small to gain from threads, and on a busy machine spinning
    threads slow them tenfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bright_quadrant(n=256, seed=0, classes=4):
    """Class c lights quadrant c of a noisy 8x8 image: trivially separable."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        c = i % classes
        image = 0.3 * torch.rand(1, SIDE, SIDE, generator=gen)
        y, x = divmod(c, 2)
        image[:, y * 4:(y + 1) * 4, x * 4:(x + 1) * 4] += 0.7
        items.append((image, c))
    return items


def as_dicts(items):
    """The same items with dict labels: the class, its parity, and a -1-padded set."""
    return [(image, {"label": c, "parity": c % 2, "set": torch.tensor([c, -1, -1])}) for image, c in items]


def encoder(seed=0):
    torch.manual_seed(seed)
    return SmallConvNet(in_channels=1, input_size=SIDE, feature_dim=16)


@torch.no_grad()
def accuracy(result, items, key="label"):
    images = torch.stack([image for image, _ in items]).to(next(result.encoder.parameters()).device)
    labels = torch.tensor([c for _, c in items])
    result.encoder.eval()
    predicted = result.classifiers[key](result.encoder(images)).argmax(1).cpu()
    return (predicted == labels).float().mean().item()


def test_learns_a_separable_problem():
    train_items, test_items = bright_quadrant(seed=0), bright_quadrant(128, seed=1)
    before = accuracy(SupervisedResult(encoder(), {"label": torch.nn.Linear(16, 4)}), test_items)
    result = train_supervised(encoder(), train_items, label=None, num_classes=4, epochs=8, batch_size=32,
                              lr=3e-3)
    assert accuracy(result, test_items) > 0.9 > before + 0.3  # chance is 0.25
    assert len(result.history) == 8 and result.history[-1]["train_accuracy"]["label"] > 0.9
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_num_classes_read_off_the_dataset():
    result = train_supervised(encoder(), bright_quadrant(64), label=None, epochs=1, batch_size=32)
    assert result.classifiers["label"].out_features == 4


def test_dict_labels_and_a_list_of_labels():
    items = as_dicts(bright_quadrant())
    result = train_supervised(encoder(), items, label=["label", "parity"], num_classes={"label": 4, "parity": 2},
                              epochs=6, batch_size=32, lr=3e-3)
    assert set(result.classifiers) == {"label", "parity"}
    assert result.classifiers["parity"].out_features == 2
    assert result.history[-1]["train_accuracy"]["parity"] > 0.8
    assert result.history[-1]["train_accuracy"]["label"] > 0.8


def test_set_labels_are_soft_targets():
    # A one-class set is the plain class: the soft target equals the hard one.
    items = as_dicts(bright_quadrant())
    result = train_supervised(encoder(), items, label="set", num_classes=4, epochs=6, batch_size=32, lr=3e-3)
    assert result.history[-1]["train_accuracy"]["set"] > 0.8
    assert accuracy(result, bright_quadrant(128, seed=1), key="set") > 0.8


def test_same_seed_same_weights_and_augment_is_called():
    calls = []

    def jitter(x, generator):
        calls.append(len(x))
        return x + 0.05 * torch.randn(x.shape, generator=generator, device=x.device)

    runs = [train_supervised(encoder(), bright_quadrant(64), label=None, num_classes=4, epochs=2, batch_size=16,
                             augment=jitter, seed=3, device="cpu") for _ in range(2)]  # bitwise: CPU
    assert calls == [16] * 8 * 2  # 4 steps x 2 epochs, two runs
    for a, b in zip(runs[0].encoder.state_dict().values(), runs[1].encoder.state_dict().values()):
        assert torch.equal(a, b)


def test_mode_and_device_afterwards():
    model = encoder().eval()
    result = train_supervised(model, bright_quadrant(64), label=None, num_classes=4, epochs=1, batch_size=32,
                              device="cpu")
    assert result.encoder is model and not model.training  # the caller's mode comes back
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert not result.classifiers["label"].training
    model.train()
    train_supervised(model, bright_quadrant(64), label=None, num_classes=4, epochs=1, batch_size=32)
    assert model.training


@pytest.mark.parametrize("kwargs, match", [
    ({"label": "colour"}, "label: expected one of"),
    ({"label": ["label", "label"]}, "label: expected distinct"),
    ({"label": 3}, "label: expected a label name"),
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 1000}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"lr": 0.0}, "lr"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"num_classes": 1}, "num_classes"),
    ({"num_classes": {"parity": 2}}, "num_classes: no entry for 'label'"),
    ({"num_classes": 3}, "label: 'label' has classes outside 0..2"),
    ({"precision": "fp8"}, "precision"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    options = {"label": "label", "num_classes": 4, "epochs": 1, "batch_size": 32, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        train_supervised(encoder(), as_dicts(bright_quadrant(64)), **options)


def test_bad_encoder_and_dataset():
    with pytest.raises(ValueError, match="encoder: expected an int feature_dim"):
        train_supervised(torch.nn.Linear(4, 4), bright_quadrant(64), label=None, epochs=1)
    with pytest.raises(TypeError, match="dataset: expected items"):
        train_supervised(encoder(), [torch.zeros(1, SIDE, SIDE)] * 64, label=None, epochs=1, batch_size=32)
    floats = [(image, float(c)) for image, c in bright_quadrant(64)]
    with pytest.raises(ValueError, match="label: 'label' must be an int class"):
        train_supervised(encoder(), floats, label=None, num_classes=4, epochs=1, batch_size=32)
