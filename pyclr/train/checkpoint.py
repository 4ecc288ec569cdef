"""Checkpoints written atomically: a temporary file in the same folder, then a rename, so a
run killed while saving leaves the previous checkpoint intact."""
from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import signal

import torch

CHECKPOINT = "checkpoint.pt"


def save_atomic(state: dict, path: str) -> None:
    """Writes ``state`` to ``path`` through a temporary file and a rename. Ctrl-C (SIGINT) or
    SIGTERM arriving meanwhile is held until the file is in place, then delivered: torch.save
    interrupted inside its writer fails with an unreadable RuntimeError instead."""
    with signals_deferred():
        write_atomic(path, lambda f: torch.save(state, f))


@contextlib.contextmanager
def signals_deferred(signums=(signal.SIGINT, signal.SIGTERM)):
    """Holds ``signums`` inside the block and re-raises them, to the handlers they had, after it."""
    received = []
    try:
        previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in signums}
    except ValueError:  # not the main thread: signals go to the main thread anyway
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        for s in dict.fromkeys(received):
            signal.raise_signal(s)


def write_atomic(path: str, write, mode: str = "wb") -> None:
    """Calls ``write(f)`` on a temporary file beside ``path`` (opened with ``mode``), then
    renames it over ``path``: a process stopped at any moment leaves the old file or the new
    one, never a part, and no temporary file behind."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _temporary_file(folder, os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _temporary_file(folder: str, name: str):
    """``(fd, path)`` of a new file ``.name.XXXX.tmp`` in ``folder``, created with the mode a
    plain open() gives (0666 less the umask: mkstemp's 0600 survived the rename, and a group
    sharing the run folder could not read it), without touching the process's umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free temporary file name for {name}")


def load(path: str, map_location="cpu") -> dict:
    """The checkpoint at ``path``, read with ``weights_only=True``: tensors, numbers, strings
    and containers only, which is all pyclr writes. Unpickling anything else would run code
    from the file (a run folder is something people download and share)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        if found:
            raise ValueError(f"checkpoint {path}: holds Python objects other than tensors, numbers, "
                             "strings and containers, which pyclr does not unpickle (that would run "
                             f"code from the file): {found[0]}") from exc
        raise ValueError(f"checkpoint {path}: cannot be read ({str(exc).splitlines()[0]})") from exc
    except Exception as exc:  # a truncated or foreign file
        raise ValueError(f"checkpoint {path}: cannot be read ({exc})") from exc
