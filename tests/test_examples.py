"""Every example script imports against the current API and offers --quick (their runs are
minutes long, so CI checks only that they load and parse their arguments). Files starting with
an underscore are the scripts' shared helpers (examples/_common.py, tested in
test_examples_common.py), not scripts."""
import pathlib
import runpy
import sys

import pytest

FOLDER = pathlib.Path(__file__).parent.parent / "examples"
EXAMPLES = sorted(p for p in FOLDER.glob("*.py") if not p.name.startswith("_"))
# the scripts that train several models, whose full modes may need several device calls
RESUMABLE = ("batch_size_head_depth", "feature_suppression_bits", "feature_suppression_sizes",
             "hierarchy_similarity", "loss_instantiations", "multidigit", "sprites_decodability")


def test_there_are_examples():
    assert len(EXAMPLES) >= 2
    assert (FOLDER / "_common.py").exists() and all(p.name != "_common.py" for p in EXAMPLES)


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_has_quick_mode(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out


@pytest.mark.parametrize("name", RESUMABLE)
def test_multi_model_examples_offer_fresh(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(FOLDER / f"{name}.py"), run_name="__main__")
    assert "--fresh" in capsys.readouterr().out
