"""Contrastive losses. Each has a fused form here and a plain-PyTorch one in ``reference``."""
from . import reference
from .ntxent import NTXentLoss, nt_xent

__all__ = ["NTXentLoss", "nt_xent", "reference"]
