"""What the example scripts share: their common options (--quick, --data-root, --out, --device,
--threads, --fresh), the header of their JSON, an atomic JSON writer, and the run log that lets
a full-mode run which trains many models span several device calls (or sessions).

The run log: each finished unit of work (one trained model and its probe results, under a
stable key such as "random/simclr/4") is written at once to ``<out>/<name>.partial.json``,
with the settings of the run. A later run with the same settings reuses the finished units
instead of recomputing them; one with other settings is refused (``--fresh`` discards the
file). Every unit seeds its own random state, so a reused unit leaves the others unchanged;
a reused unit is returned exactly as it was first written (its "time_s" included), and a
fresh one goes through the same JSON round trip, so the final JSON does not depend on
whether a run was resumed. The script deletes the log once its final JSON is written.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Callable

import torch

from pyclr.train.checkpoint import write_atomic

QUICK_HELP = "the 2-core CPU setting (minutes)"
THREADS_HELP = "CPU threads for torch (default: torch's choice; 1 is faster on a CPU shared with other jobs)"


def positive_int(text: str) -> int:
    """The argparse type of the scripts' counts (--threads, --epochs, --views, ...): an
    integer >= 1, refused before any work starts."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def parser(doc: str, *, quick_help: str = QUICK_HELP, data_root: str | None = None) -> argparse.ArgumentParser:
    """A script's parser, described by its docstring's first paragraph, with --quick and, where
    the script reads a dataset from disk, --data-root (``data_root`` is its help)."""
    parser = argparse.ArgumentParser(description=" ".join(doc.strip().split("\n\n")[0].split()))
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if data_root is not None:
        parser.add_argument("--data-root", help=data_root)
    return parser


def add_run_options(parser: argparse.ArgumentParser, *, threads: bool = False, resumable: bool = False) -> None:
    """--out and --device; --threads and --fresh (see :class:`RunLog`) where the script offers them."""
    parser.add_argument("--out", default="results", help="folder for the JSON and any figures (default: results)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    if threads:
        parser.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    if resumable:
        parser.add_argument("--fresh", action="store_true",
                            help="discard the finished units of an earlier, stopped run (OUT/NAME.partial.json) "
                                 "instead of resuming it")


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed command line, with --threads applied."""
    args = parser.parse_args()
    threads = getattr(args, "threads", None)
    if threads is not None:
        torch.set_num_threads(threads)
    return args


def header(quick: bool, device, threads: str | None = "threads") -> dict:
    """The first keys of every script's JSON: mode, device, torch version and, under the key
    ``threads`` (None: left out), torch's CPU thread count."""
    out = {"mode": "quick" if quick else "full", "device": str(device), "torch": torch.__version__}
    if threads is not None:
        out[threads] = torch.get_num_threads()
    return out


def write_json(path: str, payload) -> None:
    """``payload`` as indented JSON, atomically: a temporary file in the same folder, then
    os.replace, so that a run stopped at any moment leaves the old file or the new one."""
    text = json.dumps(payload, indent=1)  # fails before anything is written
    write_atomic(path, lambda f: f.write(text), mode="w")


def _units(count: int) -> str:
    return f"{count} finished unit{'' if count == 1 else 's'}"


def _plain(value):
    """``value`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


class RunLog:
    """The finished units of one script's run, kept in ``path`` (see the module docstring).

    ``settings`` is everything the units depend on; ``fresh`` discards an existing log."""

    def __init__(self, path: str, settings: dict, fresh: bool = False):
        self.path, self.settings, self.units = path, _plain(settings), {}
        if not os.path.exists(path):
            return
        if fresh:
            os.remove(path)
            print(f"--fresh: discarded {path}", flush=True)
            return
        try:
            with open(path) as f:
                saved = json.load(f)
            saved_settings, units = saved["settings"], saved["units"]
            if not isinstance(saved_settings, dict) or not isinstance(units, dict):
                raise TypeError("settings and units should be objects")
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"{path} is not a run log of this script ({error}): "
                             "rerun with --fresh to discard it") from None
        if saved_settings != self.settings:
            differ = sorted(key for key in {*saved_settings, *self.settings}
                            if saved_settings.get(key) != self.settings.get(key))
            raise SystemExit(f"{path} holds {_units(len(units))} of a run with other settings "
                             f"(differing: {', '.join(differ)}); rerun with --fresh to discard them, "
                             "or give another --out")
        self.units = units
        print(f"resuming from {path}: {_units(len(units))} ({', '.join(units)})", flush=True)

    def unit(self, key: str, compute: Callable[[], object]):
        """The result of unit ``key``: reused from the log, or ``compute()`` (which must seed its
        own random state) recorded in the log at once."""
        if key in self.units:
            print(f"{key}: reused (finished earlier, kept in {self.path})", flush=True)
            return self.units[key]
        value = _plain(compute())
        self.units[key] = value
        write_json(self.path, {"settings": self.settings, "units": self.units})
        return value

    def close(self) -> None:
        """The run is complete and its final JSON written: the log is no longer needed."""
        if os.path.exists(self.path):
            os.remove(self.path)


def run_log(args: argparse.Namespace, name: str, device, settings: dict) -> RunLog:
    """The run log of script ``name`` in ``args.out``; its settings are the mode, the device,
    the torch version and ``settings``."""
    return RunLog(os.path.join(args.out, f"{name}.partial.json"),
                  {**header(args.quick, device, threads=None), **settings}, fresh=args.fresh)
