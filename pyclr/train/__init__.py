"""``pyclr.train``: contrastive training with LARS, warm-up + cosine, checkpoints that resume
exactly, MoCo, mixed precision and torchrun.

The module is callable: ``pyclr.train(encoder, dataset, ...)`` is :func:`pyclr.train.train`, and
``pyclr.train.train_supervised``, ``pyclr.train.presets`` and the rest are its attributes as
in any package (``import pyclr.train.presets`` works as usual).
"""
import importlib
import inspect
import sys
import types

from .checkpoint import load as load_checkpoint
from .loop import METHODS, PRECISIONS, TrainResult, train
from .moco import MoCo
from .optim import LARS, default_lr, param_groups, warmup_cosine
from .supervised import SupervisedResult, train_supervised

__all__ = ["train", "TrainResult", "LARS", "MoCo", "param_groups", "default_lr", "warmup_cosine",
           "load_checkpoint", "METHODS", "PRECISIONS", "train_supervised", "SupervisedResult"]


class _CallableModule(types.ModuleType):
    """This package's module type: calling it calls :func:`train`."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)

    def __reduce__(self):  # pickled by name, as a function is (spawn workers, joblib, deepcopy)
        return importlib.import_module, (self.__name__,)


sys.modules[__name__].__class__ = _CallableModule
__signature__ = inspect.signature(train)  # what inspect and help() show for pyclr.train(...)
