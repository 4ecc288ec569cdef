import pytest


@pytest.fixture(scope="session")
def emu():
    """torch.ops.pyclr_emu, built on first use (about half a minute)."""
    from .build import build

    return build()
