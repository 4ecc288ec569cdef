"""``pyclr.train``: contrastive training with LARS, warm-up + cosine, checkpoints that resume
exactly, MoCo, mixed precision and torchrun."""
from .checkpoint import load as load_checkpoint
from .loop import METHODS, PRECISIONS, TrainResult, train
from .moco import MoCo
from .optim import LARS, default_lr, param_groups, warmup_cosine
from .supervised import SupervisedResult, train_supervised

__all__ = ["train", "TrainResult", "LARS", "MoCo", "param_groups", "default_lr", "warmup_cosine",
           "load_checkpoint", "METHODS", "PRECISIONS", "train_supervised", "SupervisedResult"]
