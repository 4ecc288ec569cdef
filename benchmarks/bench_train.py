"""SimCLR training throughput (images/s): pyclr.train (batched augmentation on the device,
fused loss, channels_last, bf16) against a plain PyTorch loop (torchvision per-image
augmentation in DataLoader workers, the eager loss), same run. Issue 5's target on a GPU:
ResNet-18 with the CIFAR stem, 32x32, batch 512, bf16, at least 3x the plain loop.

    pytest benchmarks/bench_train.py --benchmark-json=out.json
"""
import os
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import pyclr
from pyclr.data import SimCLRAugment
from pyclr.losses import reference
from pyclr.models import ResNet

GPU = torch.cuda.is_available()
# device, batch, steps (the first is not timed), precision
CASES = [("cpu", 64, 3, "fp32")] + ([("cuda", 512, 30, "bf16")] if GPU else [])


class RandomImages(Dataset):
    """CIFAR-sized uint8 images held in memory, so that reading costs nothing."""

    def __init__(self, n, transform=None):
        self.images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(0))
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        if self.transform is None:
            return x.float() / 255, 0
        return self.transform(x), self.transform(x)


def steady_rate(batch, ends):
    """Images/s between the end of the first step and the end of the last: model building and
    DataLoader start-up are not training throughput. ``ends``: a time after each step (each
    loop reads its loss with .item(), so the device has caught up)."""
    return batch * (len(ends) - 1) / (ends[-1] - ends[0])


def run_pyclr(device, batch, steps, precision):
    data = RandomImages(batch * steps)
    augment = SimCLRAugment.from_policy("simclr_cifar", size=32)
    ends = []
    pyclr.train(ResNet("resnet18", cifar_stem=True), data, epochs=1, batch_size=batch, augment=augment,
                precision=precision, device=device, channels_last=device == "cuda", progress=False,
                num_workers=2 if device == "cuda" else 0, callbacks=[lambda info: ends.append(time.perf_counter())])
    return steady_rate(batch, ends)


def run_plain(device, batch, steps, precision):
    v2 = pytest.importorskip("torchvision.transforms.v2")
    transform = v2.Compose([v2.RandomResizedCrop(32, antialias=False), v2.RandomHorizontalFlip(),
                            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                            v2.RandomGrayscale(0.2), v2.ToDtype(torch.float32, scale=True)])
    loader = DataLoader(RandomImages(batch * steps, transform), batch_size=batch, drop_last=True,
                        num_workers=min(8, os.cpu_count() or 1), persistent_workers=False)
    encoder = ResNet("resnet18", cifar_stem=True).to(device)
    head = pyclr.models.ProjectionHead(512, 512, 128).to(device)
    opt = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1, momentum=0.9)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    ends = []
    for x1, x2 in loader:
        x = torch.cat([x1, x2]).to(device, non_blocking=True)
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=precision != "fp32"):
            z1, z2 = head(encoder(x)).chunk(2)
            loss = reference.nt_xent(z1.float(), z2.float(), temperature=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # logged every step, as pyclr.train does
        ends.append(time.perf_counter())
    return steady_rate(batch, ends)


@pytest.mark.parametrize("impl", ["pyclr", "plain"])
@pytest.mark.parametrize("device,batch,steps,precision", CASES, ids=str)
def test_training_throughput(benchmark, impl, device, batch, steps, precision):
    fn = run_pyclr if impl == "pyclr" else run_plain
    fn(device, batch, 2, precision)  # warm-up: kernels, allocator
    rates = []
    benchmark.pedantic(lambda: rates.append(fn(device, batch, steps, precision)), rounds=1, iterations=1)
    benchmark.extra_info.update(impl=impl, device=device, batch=batch, steps=steps, dtype=precision,
                                images_per_s=rates[-1], torch=torch.__version__,
                                device_name=torch.cuda.get_device_name() if device == "cuda" else "cpu")
