"""The scalar argument checks every module shares, so that one argument is checked one way
everywhere: a wrong type is a TypeError, a value out of range a ValueError, and both name the
argument, what was expected and what came (DESIGN.md). numpy scalars count as the Python
numbers and bools they stand for (a sweep over ``np.arange`` passes its values as they come);
each check returns the plain Python value."""
from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch


def is_int(value) -> bool:
    """A Python or numpy integer; not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """A Python or numpy real number; not a bool (nor a tensor)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def shown(value) -> str:
    """How an error shows what came: a number, bool or short string by its repr (numpy's
    carry their type), anything else by its type."""
    if value is None or isinstance(value, (numbers.Number, np.bool_, str)) and len(repr(value)) <= 40:
        return repr(value)
    return type(value).__name__


def describe(value) -> str:
    """How an error shows a tensor or array that came: its type, shape and dtype."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return shown(value)


def _bounds(low, high, inclusive: bool = True, integers: bool = False) -> str:
    if integers:
        low, high = (None if n is None else _power(n) for n in (low, high))
    if low is not None and high is not None:
        if integers:
            return f"in {low}..{high}"
        return f"in [{low}, {high}]" if inclusive else f"in ({low}, {high})"
    if low is not None:
        return f">= {low}" if inclusive else f"> {low}"
    return f"<= {high}" if inclusive else f"< {high}"


def _power(n) -> str:
    """2**63-1 rather than 9223372036854775807 in a message."""
    if isinstance(n, int) and n >= 1 << 20:
        for offset in (0, 1, 2, -1):
            if (n + offset) & (n + offset - 1) == 0:
                return f"2**{(n + offset).bit_length() - 1}" + ("" if offset == 0 else f"{-offset:+d}")
    return str(n)


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """An integer in ``low..high`` (inclusive; either end open when None), as a Python int."""
    if not is_int(value):
        kind = "an int" if low is None and high is None else f"an int {_bounds(low, high, integers=True)}"
        raise TypeError(f"{name}: expected {kind}, got {shown(value)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name}: expected an int {_bounds(low, high, integers=True)}, got {value}")
    return value


def check_real(name: str, value, low: float | None = None, high: float | None = None,
               inclusive: bool = True) -> float:
    """A finite real number between ``low`` and ``high`` (either end open when None;
    ``inclusive=False`` excludes the ends), as a Python float."""
    if not is_real(value):
        raise TypeError(f"{name}: expected a number, got {shown(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        value = math.inf if value > 0 else -math.inf
    bounded = low is not None or high is not None
    outside = bounded and (
        (low is not None and (value < low if inclusive else value <= low))
        or (high is not None and (value > high if inclusive else value >= high)))
    # comparisons, not math.isfinite: under torch.compile a float argument may be symbolic
    # (a temperature schedule), and a comparison is what dynamo can guard on
    if not -math.inf < value < math.inf or outside:
        within = f" {_bounds(low, high, inclusive)}" if bounded else ""
        raise ValueError(f"{name}: expected a finite number{within}, got {value}")
    return value


def check_positive(name: str, value) -> float:
    """A finite real number > 0, as a float."""
    return check_real(name, value, 0, None, inclusive=False)


def check_nonnegative(name: str, value) -> float:
    """A finite real number >= 0, as a float."""
    return check_real(name, value, 0)


# The largest image side (in pixels) pyclr makes or resizes to: a size past it is an error
# before anything is allocated (SimCLRAugment(10**6) asked for 16 TB).
MAX_SIDE = 8192


def check_side(name: str, value) -> int:
    """An image side in pixels: an int in 1..MAX_SIDE."""
    return check_int(name, value, 1, MAX_SIDE)


def check_size(name: str, size) -> tuple[int, int]:
    """An image size: an int (a square) or an (H, W) pair of ints in 1..MAX_SIDE, as an (H, W) pair."""
    pair = (size, size) if is_int(size) else size
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(is_int(s) for s in pair)):
        got = shown(size) if is_real(size) else repr(size)
        raise TypeError(f"{name}: expected an int or an (H, W) pair of ints, got {got}")
    if min(pair) < 1:
        raise ValueError(f"{name}: expected sizes >= 1, got {size!r}")
    if max(pair) > MAX_SIDE:
        raise ValueError(f"{name}: expected sizes of at most {MAX_SIDE} pixels, got {size!r}")
    return int(pair[0]), int(pair[1])


def check_bool(name: str, value) -> bool:
    """A bool (numpy's too), as a Python bool: a truthy string such as "no" is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {shown(value)}")
    return bool(value)


def check_choice(name: str, value, choices) -> None:
    """``value`` one of ``choices``; an array or a tensor never is (``in`` would compare it
    element by element: numpy's "truth value of an array is ambiguous" instead of this error)."""
    if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim > 0:
        ok = False
    else:
        try:
            ok = value in choices
        except (TypeError, ValueError, RuntimeError):  # unhashable or incomparable
            ok = False
    if not ok:
        got = repr(value) if value is None or isinstance(value, (str, numbers.Number)) else describe(value)
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {got}")


def as_sequence(value):
    """``value`` as a sequence where it is one (a 1-D numpy array as a list, np.logspace(...)
    say; a string is not one, nor a dict or set, whose order is not the caller's), else None."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return value.tolist()
    return value if isinstance(value, Sequence) and not isinstance(value, str) else None


def widen_unsigned(name: str, value):
    """``value`` with wide unsigned integers (numpy's or torch's uint16-64: torch computes no
    min or max on them) as int64 (a numpy array stays one, a tensor stays on its device), or a
    ValueError naming ``name`` for values past 2**63; anything else as it came."""
    if isinstance(value, torch.Tensor) and value.dtype in (torch.uint16, torch.uint32, torch.uint64):
        return torch.from_numpy(widen_unsigned(name, value.cpu().numpy())).to(value.device)
    if isinstance(value, np.ndarray) and value.dtype.kind == "u" and value.dtype.itemsize > 1:
        if value.size and int(value.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name}: expected values below 2**63, got {int(value.max())}")
        value = value.astype(np.int64)
    return value


def check_device(device) -> torch.device:
    """``device`` (a torch.device or its name) as a torch.device, or a ValueError naming the
    argument (torch's own message names neither)."""
    if isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device: expected a device such as 'cpu', 'cuda' or 'cuda:1', got {shown(device)}") from exc


def check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")


def check_options(name: str, factory, options, fixed=()) -> None:
    """``options`` (keyword arguments for ``factory``, e.g. a config section) must be ones it
    takes, other than the ``fixed`` ones: a misspelt key is named with the accepted ones, not
    left to a TypeError."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and p.name not in fixed]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown options {unknown}; it takes {', '.join(known) or 'none'}")
