"""examples/_common.py: the examples' shared options, JSON header and the run log that lets a
stopped full-mode run resume (the scripts themselves are only loaded by test_examples.py)."""
import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
PATH = EXAMPLES / "_common.py"
_spec = importlib.util.spec_from_file_location("examples_common", PATH)
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

SETTINGS = {"mode": "quick", "device": "cpu", "settings": {"epochs": 3, "sizes": (14, 42)}}


def never():
    raise AssertionError("a finished unit was recomputed")


def read(path):
    with open(path) as f:
        return json.load(f)


def test_finished_units_are_written_at_once_with_the_settings(tmp_path):
    path = tmp_path / "name.partial.json"
    log = common.RunLog(str(path), SETTINGS)
    row = log.unit("random/simclr/4", lambda: {"probe_accuracy": 0.5, "counts": (1, 4), "time_s": 12.5})
    assert row == {"probe_accuracy": 0.5, "counts": [1, 4], "time_s": 12.5}  # as it reads back from JSON
    saved = read(path)
    assert saved["settings"] == {"mode": "quick", "device": "cpu", "settings": {"epochs": 3, "sizes": [14, 42]}}
    assert saved["units"] == {"random/simclr/4": row}


def test_resume_reuses_finished_units_and_computes_the_rest(tmp_path, capsys):
    path = tmp_path / "name.partial.json"
    first = common.RunLog(str(path), SETTINGS)
    done = first.unit("a", lambda: {"accuracy": 0.123456789012345, "time_s": 40.25})
    capsys.readouterr()

    log = common.RunLog(str(path), SETTINGS)
    assert "resuming from" in capsys.readouterr().out
    assert log.unit("a", never) == done  # the original row, its time_s included
    assert "a: reused" in capsys.readouterr().out
    assert log.unit("b", lambda: {"accuracy": 0.5}) == {"accuracy": 0.5}
    assert list(read(path)["units"]) == ["a", "b"]


def test_a_resumed_row_equals_a_fresh_one(tmp_path):
    value = {"probe_accuracy": {"first": 0.1 + 0.2, "second": float("nan")}, "n_digits": None, "time_s": 1 / 3}
    fresh = common.RunLog(str(tmp_path / "x.partial.json"), SETTINGS).unit("k", lambda: value)
    resumed = common.RunLog(str(tmp_path / "x.partial.json"), SETTINGS).unit("k", never)
    assert json.dumps(fresh) == json.dumps(resumed) == json.dumps(value)


def test_other_settings_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "multidigit.partial.json"
    common.RunLog(str(path), SETTINGS).unit("a", lambda: 1)
    before = path.read_text()
    other = {**SETTINGS, "device": "cuda"}
    with pytest.raises(SystemExit) as refused:
        common.RunLog(str(path), other)
    message = str(refused.value.code)
    assert str(path) in message and "device" in message and "--fresh" in message
    assert path.read_text() == before  # refused, not overwritten


def test_fresh_discards_the_log(tmp_path, capsys):
    path = tmp_path / "name.partial.json"
    common.RunLog(str(path), SETTINGS).unit("a", lambda: 1)
    log = common.RunLog(str(path), {**SETTINGS, "device": "cuda"}, fresh=True)
    assert "discarded" in capsys.readouterr().out and not path.exists()
    assert log.unit("a", lambda: 2) == 2
    assert read(path)["units"] == {"a": 2}


@pytest.mark.parametrize("text", ['{"settings": {"mode": "qu', '[1, 2]', '{"settings": [], "units": {}}'])
def test_an_unreadable_log_is_refused_naming_the_file(tmp_path, text):
    path = tmp_path / "name.partial.json"
    path.write_text(text)
    with pytest.raises(SystemExit, match=str(path)):
        common.RunLog(str(path), SETTINGS)


def test_a_write_stopped_before_the_replace_leaves_the_log_whole(tmp_path, monkeypatch):
    path = tmp_path / "name.partial.json"
    log = common.RunLog(str(path), SETTINGS)
    log.unit("a", lambda: {"accuracy": 0.5})
    before = path.read_text()

    def stopped(source, target):
        raise KeyboardInterrupt  # as if the run were stopped between the write and the rename

    monkeypatch.setattr(common.os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        log.unit("b", lambda: {"accuracy": [0.1] * 1000})
    assert path.read_text() == before and read(path)["units"] == {"a": {"accuracy": 0.5}}
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind


def test_a_value_json_cannot_hold_leaves_the_log_whole(tmp_path):
    path = tmp_path / "name.partial.json"
    log = common.RunLog(str(path), SETTINGS)
    log.unit("a", lambda: 1)
    before = path.read_text()
    with pytest.raises(TypeError):
        log.unit("b", lambda: {"tensor": torch.zeros(2)})
    assert path.read_text() == before and os.listdir(tmp_path) == [path.name]


def test_close_removes_the_log(tmp_path):
    path = tmp_path / "name.partial.json"
    log = common.RunLog(str(path), SETTINGS)
    log.unit("a", lambda: 1)
    log.close()
    assert not path.exists()
    log.close()  # nothing left to remove: no error


def test_run_log_lives_in_out_and_records_mode_device_and_torch(tmp_path):
    args = argparse.Namespace(out=str(tmp_path / "out"), quick=True, fresh=False)
    log = common.run_log(args, "multidigit", torch.device("cpu"), {"settings": {"epochs": 3}})
    log.unit("a", lambda: 1)
    saved = read(tmp_path / "out" / "multidigit.partial.json")
    assert saved["settings"] == {"mode": "quick", "device": "cpu", "torch": torch.__version__,
                                 "settings": {"epochs": 3}}


def test_write_json_is_indented_json(tmp_path):
    path = tmp_path / "sub" / "result.json"
    common.write_json(str(path), {"b": [1, 2], "a": None})
    assert path.read_text() == json.dumps({"b": [1, 2], "a": None}, indent=1)


def test_header_and_threads(monkeypatch):
    assert list(common.header(True, "cpu")) == ["mode", "device", "torch", "threads"]
    assert common.header(False, torch.device("cpu"), threads=None) == {
        "mode": "full", "device": "cpu", "torch": torch.__version__}
    parser = common.parser("Title line.\n\nMore.", data_root="folder")
    common.add_run_options(parser, threads=True, resumable=True)
    monkeypatch.setattr("sys.argv", ["x", "--threads", "0"])
    with pytest.raises(SystemExit):
        common.parse(parser)
    monkeypatch.setattr("sys.argv", ["x", "--quick", "--data-root", "d", "--fresh"])
    args = common.parse(parser)
    assert (args.quick, args.data_root, args.fresh, args.out, args.device, args.threads) == (
        True, "d", True, "results", None, None)


def test_description_is_the_whole_first_paragraph():
    # it was the docstring's first line, cut mid-sentence ("linear evaluation across batch")
    parser = common.parser("A title that goes\non to a second line.\n\nDetails.")
    assert parser.description == "A title that goes on to a second line."


@pytest.mark.parametrize("script,flag", [("invariance", "--views"), ("invariance", "--instances"),
                                         ("hierarchy_similarity", "--epochs")])
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_counts_are_refused_before_any_work(script, flag, value):
    # --views 0 trained the encoder, then failed in torch.stack; --instances -1 failed the same way
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, f"{script}.py"), "--quick", flag, value],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"argument {flag}: expected an integer >= 1, got '{value}'" in proc.stderr
