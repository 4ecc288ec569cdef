"""Augmentation throughput: the batched pyclr SimCLR policy vs torchvision.transforms.v2 applied
image by image (what a DataLoader's per-sample transform does), same run.

    pytest benchmarks/bench_augment.py --benchmark-json=out.json      (GPU cases run when there is one)

Cases: 32x32 batches of 512 with SimCLR's CIFAR policy (no blur) and 224x224 batches of 64 with
its ImageNet policy (blur p = 0.5), float32 images in [0, 1] already at the output size, so
every crop is upsampled (torchvision's antialias, on by default, changes nothing then). Each
case records images/s.
"""
import pytest
import torch

from pyclr.data.augment import SimCLRAugment, blur_kernel_size

tv = pytest.importorskip("torchvision.transforms.v2")

GPU = torch.cuda.is_available()
POLICY = {32: "simclr_cifar", 224: "simclr_imagenet"}
CASES = [("cpu", 32, 512), ("cpu", 224, 64)]
if GPU:
    CASES += [("cuda", 32, 512), ("cuda", 224, 64)]


def torchvision_policy(aug: SimCLRAugment, size: int):
    """The same policy as ``aug`` from torchvision's per-image transforms."""
    s = aug.jitter_strength
    k = aug.blur_kernel or blur_kernel_size(size, size)
    return tv.Compose([
        tv.RandomResizedCrop(size, scale=aug.crop_scale, ratio=aug.crop_ratio),
        tv.RandomHorizontalFlip(aug.flip_p),
        tv.RandomApply([tv.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=aug.jitter_p),
        tv.RandomGrayscale(aug.grayscale_p),
        tv.RandomApply([tv.GaussianBlur(k, aug.blur_sigma)], p=aug.blur_p),
    ])


def make_step(impl: str, aug: SimCLRAugment, size: int, device: str):
    if impl == "pyclr":
        gen = torch.Generator(device=device).manual_seed(0)
        return lambda x: aug(x, gen)
    per_image = torchvision_policy(aug, size)
    return lambda x: torch.stack([per_image(img) for img in x])


@pytest.mark.parametrize("impl", ["pyclr", "torchvision"])
@pytest.mark.parametrize("device,size,batch", CASES, ids=lambda v: str(v))
def test_augment_throughput(benchmark, impl, device, size, batch):
    aug = SimCLRAugment.from_policy(POLICY[size], size)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    step = make_step(impl, aug, size, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run():
        out = step(x)
        sync()
        return out

    out = run()  # warm-up, and a check that both produce the same kind of batch
    assert out.shape == x.shape and out.dtype == x.dtype
    rounds = 3 if device == "cpu" else 20
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(impl=impl, device=device, size=size, batch=batch, dtype="fp32",
                                policy=POLICY[size], torch=torch.__version__)
    benchmark.extra_info["device_name"] = (torch.cuda.get_device_name() if device == "cuda"
                                           else f"cpu x{torch.get_num_threads()} threads")
    benchmark.extra_info["images_per_s"] = batch / benchmark.stats.stats.median
