"""The pyclr command end to end on a tiny configuration, and its error handling."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from pyclr.cli import main
from pyclr.train.presets import resolve_config

TINY = {
    "encoder": {"name": "small_convnet", "in_channels": 1, "input_size": 28, "feature_dim": 32},
    "dataset": {"name": "multidigit", "n_digits": 1, "canvas": 28, "size": 96},
    "augment": {"policy": "simclr_cifar", "size": 28},
    "head": {"hidden_dim": 32, "out_dim": 16, "num_layers": 2},
    "train": {"epochs": 2, "batch_size": 32, "optimizer": "adam", "temperature": 0.5},
    "eval": {"train": {"name": "multidigit_eval", "canvas": 28, "size": 120, "seed": 1},
             "test": {"name": "multidigit_eval", "canvas": 28, "size": 60, "seed": 2, "train": False},
             "label": "label"},
}


def write_config(tmp_path, config=TINY):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_train_then_eval(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", write_config(tmp_path), "--out", out, "--quiet", "--set", "train.lr=0.002"]) == 0
    printed = capsys.readouterr().out
    assert "linear probe accuracy" in printed and "random encoder" in printed
    report = json.load(open(os.path.join(out, "report.json")))
    assert 0 <= report["probe_accuracy"] <= 1 and report["config"]["train"]["lr"] == 0.002
    assert len(open(os.path.join(out, "metrics.jsonl")).read().splitlines()) == 2
    assert main(["eval", out]) == 0
    assert "linear probe accuracy" in capsys.readouterr().out
    # a second call resumes: nothing left to train, same checkpoint
    assert main(["train", write_config(tmp_path), "--out", out, "--quiet", "--no-baseline",
                 "--set", "train.lr=0.002"]) == 0


@pytest.mark.parametrize("argv,message", [
    (["train", "no-such-preset", "--out", "x"], "neither a preset"),
    (["eval", "/nonexistent/run"], "has no config.json"),
])
def test_errors_are_messages_not_tracebacks(argv, message, capsys):
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_config_errors(tmp_path, capsys):
    assert main(["train", write_config(tmp_path, {**TINY, "model": {}}), "--out", str(tmp_path / "r")]) == 1
    assert "unknown keys ['model']" in capsys.readouterr().err
    big = {**TINY, "train": {**TINY["train"], "batch_size": 512}}
    assert main(["train", write_config(tmp_path, big), "--out", str(tmp_path / "r")]) == 1
    assert "batch_size: 512 is larger than the dataset (96 items)" in capsys.readouterr().err
    rgb = {**TINY, "dataset": {"name": "sprites"}}
    assert main(["train", write_config(tmp_path, rgb), "--out", str(tmp_path / "r")]) == 1
    assert "dataset: items have 3 channels, but the encoder takes 1" in capsys.readouterr().err
    bits = {**TINY, "eval": {**TINY["eval"], "train": {"name": "random_bits", "bits": 2}}}
    assert main(["train", write_config(tmp_path, bits), "--out", str(tmp_path / "r")]) == 1
    assert "eval.train: items have 3 channels" in capsys.readouterr().err  # caught before training
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
    misspelt = {**TINY, "encoder": {**TINY["encoder"], "in_chanels": 1}}
    assert main(["train", write_config(tmp_path, misspelt), "--out", str(tmp_path / "r")]) == 1
    assert "encoder 'small_convnet': unknown options ['in_chanels']; it takes in_channels," in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["train", str(tmp_path / "bad.json"), "--out", str(tmp_path / "r")]) == 1
    assert "is not valid JSON" in capsys.readouterr().err


def without(section: dict, key: str) -> dict:
    return {k: v for k, v in section.items() if k != key}


@pytest.mark.parametrize("config,flags,message", [
    # a missing required key: named with its section, not a KeyError
    ({**TINY, "encoder": without(TINY["encoder"], "name")}, [],
     "encoder: needs a 'name' (one of resnet18, resnet34, resnet50, lenet, small_convnet)"),
    ({**TINY, "dataset": without(TINY["dataset"], "name")}, [], "dataset: needs a 'name' (one of mnist,"),
    ({**TINY, "augment": without(TINY["augment"], "policy")}, [], "augment: needs a 'policy' (one of"),
    ({**TINY, "augment": {"policy": "crop_without_resize"}}, [], "augment 'crop_without_resize': needs a 'size'"),
    ({**TINY, "eval": without(TINY["eval"], "train")}, [], "eval: needs a 'train' dataset section"),
    ({**TINY, "eval": {**TINY["eval"], "test": {"size": 60}}}, [], "eval.test: needs a 'name'"),
    # an unknown key: named with the keys the section takes
    (TINY, ["--set", "train.epochz=3"], "train: unknown options ['epochz']; it takes loss, method, epochs,"),
    (TINY, ["--set", "head.hiden_dim=3"], "head: unknown options ['hiden_dim']; it takes in_dim, hidden_dim,"),
    (TINY, ["--set", "augment.polcy=none"], "augment 'simclr_cifar': unknown options ['polcy']; it takes size,"),
    (TINY, ["--set", "eval.lable=x"], "eval: unknown options ['lable']; it takes train, test, label"),
    (TINY, ["--set", "augment.policy=simclr_cfar"], "augment.policy: expected one of crop_without_resize,"),
    ({**TINY, "augment": {"policy": "random_bits_crop", "crop_scale": [0.5, 1]}}, [],
     "augment 'random_bits_crop': unknown options ['crop_scale']; it takes none"),
    ({**TINY, "augment": "simclr_cifar"}, [], "augment: expected a section of keys (a dict), got str"),
    # a bad value: named with its section ("size: ..." was the dataset's, the augmentation's or an eval set's)
    (TINY, ["--set", "dataset.size=-5"], "pyclr train: dataset.size: expected an int in 1..2**63-1, got -5"),
    (TINY, ["--set", "eval.train.size=-1"], "pyclr train: eval.train.size: expected an int in 1..2**63-1, got -1"),
    (TINY, ["--set", "augment.size=0"], "pyclr train: augment.size: expected sizes >= 1, got 0"),
    (TINY, ["--set", "augment.policy=crop_without_resize", "--set", "augment.size=0"],
     "pyclr train: augment.size: expected sizes >= 1, got 0"),  # was found at the first step
    (TINY, ["--set", "head.out_dim=-1"], "pyclr train: head.out_dim: expected an int >= 1, got -1"),
    (TINY, ["--set", "encoder.feature_dim=0"], "pyclr train: encoder.feature_dim: expected an int >= 1, got 0"),
    (TINY, ["--set", "train.seed=-1"], "pyclr train: train.seed: expected an int in 0..2**63-1, got -1"),
    ({**TINY, "dataset": {"name": "cifar10", "root": "/nonexistent"}}, [],  # FileNotFoundError's too
     "pyclr train: dataset.root: no CIFAR-10 batches"),
    # a label the eval items do not carry: found on one item, before training
    ({**TINY, "eval": {**TINY["eval"], "label": "colour"}}, [],
     "eval.label: expected one of digits, positions, cells, mnist_index, n_digits, label, got 'colour'"),
    # a label that is not one class per item (a multi-hot): the probe failed after the training
    ({**TINY, "eval": {**TINY["eval"], "label": "digits"}}, [],
     "eval.label: the probe needs one integer class per item; eval.train's items carry digits = an int64 "
     "tensor of shape (16,) (class labels: n_digits, label)"),
    # these two were found after config.json was written (which then blocked `pyclr demo` there)
    (TINY, ["--set", "train.loss=5"], "pyclr train: train.loss: expected 'nt_xent', 'generalized' or a loss module"),
    (TINY, ["--batch-size", "1000"], "pyclr train: train.batch_size: 1000 is larger than the dataset (96 items)"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_config_errors_come_before_training(tmp_path, capsys, config, flags, message):
    out = tmp_path / "run"
    assert main(["train", write_config(tmp_path, config), "--out", str(out), "--quiet", *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyclr train: ") and message in err and "Traceback" not in err
    assert not out.exists()  # nothing trained, nothing written


@pytest.mark.parametrize("setting,message", [
    ("train.lr=-1", "lr: expected a finite number in [0, 10000000000.0], got -1"),
    ("train.momentum=2", "momentum: expected a finite number in [0, 1], got 2"),
    ("train.warmup_epochs=-0.5", "warmup_epochs: expected a finite number >= 0"),
    ("train.schedule=\"step\"", "schedule: expected one of"),
])
def test_a_refused_train_value_leaves_the_run_folder_as_it_was(tmp_path, capsys, setting, message):
    # train()'s own options are checked before config.json is written: a refused value used to
    # overwrite the run's config.json, after which the run could no longer be resumed
    out = str(tmp_path / "run")
    config = write_config(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 1}})
    assert main(["train", config, "--out", out, "--quiet", "--no-baseline"]) == 0
    before = open(os.path.join(out, "config.json")).read()
    capsys.readouterr()
    assert main(["train", config, "--out", out, "--quiet", "--no-resume", "--set", setting]) == 1
    assert message in capsys.readouterr().err
    assert open(os.path.join(out, "config.json")).read() == before
    assert main(["train", config, "--out", out, "--quiet", "--no-baseline"]) == 0  # resumes
    fresh = tmp_path / "fresh"
    assert main(["train", config, "--out", str(fresh), "--quiet", "--set", setting]) == 1
    assert not fresh.exists()


def test_a_reworded_description_resumes_and_the_report_counts_epochs(tmp_path, capsys):
    # a changed description (a preset's text reworded by an upgrade) blocked the resume; a
    # config without train.epochs printed "trained None epochs"
    out = str(tmp_path / "run")
    train = {k: v for k, v in TINY["train"].items() if k != "epochs"}
    config = {**TINY, "train": {**train, "epochs": 1}, "description": "first words"}
    assert main(["train", write_config(tmp_path, config), "--out", out, "--quiet", "--no-baseline"]) == 0
    assert "trained 1 epochs" in capsys.readouterr().out
    config["description"] = "other words"
    assert main(["train", write_config(tmp_path, config), "--out", out, "--quiet", "--no-baseline"]) == 0
    assert "trained 1 epochs" in capsys.readouterr().out


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(eval=["x"]), "config.json: eval: expected a section of keys (a dict), or null"),
    (lambda c: c["encoder"].update(width=3), "config.json: encoder 'small_convnet': unknown options ['width']"),
    (lambda c: c["encoder"].update(feature_dim=-3), "config.json: encoder.feature_dim: expected an int >= 1, got -3"),
])
def test_eval_checks_a_hand_edited_config(tmp_path, capsys, edit, message):
    # an eval list raised a raw AttributeError
    out = tmp_path / "run"
    config = write_config(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 1}})
    assert main(["train", config, "--out", str(out), "--quiet", "--no-baseline"]) == 0
    saved = json.loads((out / "config.json").read_text())
    edit(saved)
    (out / "config.json").write_text(json.dumps(saved))
    capsys.readouterr()
    assert main(["eval", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyclr eval: ") and message in err and "Traceback" not in err


def test_damaged_run_folders_are_named_not_tracebacks(tmp_path, capsys):
    out = tmp_path / "run"
    config = write_config(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 1}})
    assert main(["train", config, "--out", str(out), "--quiet", "--no-baseline"]) == 0
    good = torch.load(out / "checkpoint.pt", weights_only=True)
    cases = [  # (file, content, command, message)
        ("checkpoint.pt", [1, 2], "train", "is not a pyclr training checkpoint (no encoder, head"),
        ("checkpoint.pt", {k: v for k, v in good.items() if k != "optimizer"}, "train", "(no optimizer)"),
        ("checkpoint.pt", {"encoder": good["encoder"]}, "eval", None),  # weights alone: eval works
        ("config.json", "[]", "eval", "holds a list, not a pyclr run config"),
        ("config.json", "[]", "train", "holds a list, not a pyclr run config"),
        ("config.json", "{\n", "eval", "config: cannot read"),
    ]
    for name, content, command, message in cases:
        run = tmp_path / f"case-{len(list(tmp_path.iterdir()))}"
        run.mkdir()
        for keep in ("checkpoint.pt", "config.json"):
            (run / keep).write_bytes((out / keep).read_bytes())
        if name == "checkpoint.pt":
            torch.save(content, run / name)
        else:
            (run / name).write_text(content)
        capsys.readouterr()
        argv = ["eval", str(run)] if command == "eval" else ["train", config, "--out", str(run), "--quiet", "--no-baseline"]
        code = main(argv)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if message is None:
            assert code == 0, err
        else:
            assert code == 1 and message in err, (name, content, command, err)


def test_resume_refuses_a_changed_config(tmp_path, capsys):
    """A run folder resumes only under the config it was started with (train() checks its own
    settings; this covers the encoder, dataset, augmentation and head); the eval section may
    change, and --no-resume starts over."""
    out = str(tmp_path / "run")
    config = write_config(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 1}})
    assert main(["train", config, "--out", out, "--quiet", "--no-baseline"]) == 0
    assert main(["train", config, "--out", out, "--quiet", "--no-baseline", "--set", "eval.test.size=30"]) == 0
    # how it runs may change too: data loader workers
    assert main(["train", config, "--out", out, "--quiet", "--no-baseline", "--set", "train.num_workers=0"]) == 0
    capsys.readouterr()
    assert main(["train", config, "--out", out, "--quiet", "--set", "augment.jitter_strength=0.3"]) == 1
    err = capsys.readouterr().err
    assert "holds a run started with another config (augment.jitter_strength: (unset) -> 0.3)" in err
    assert json.load(open(os.path.join(out, "config.json")))["augment"] == TINY["augment"]  # not overwritten
    assert main(["train", config, "--out", out, "--quiet", "--no-baseline", "--no-resume",
                 "--set", "augment.jitter_strength=0.3"]) == 0


def test_yaml_config_round_trips(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert resolve_config(str(path)) == resolve_config(write_config(tmp_path))
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--quiet", "--no-baseline", "--epochs", "1"]) == 0
    assert json.load(open(out / "config.json")) == {**TINY, "train": {**TINY["train"], "epochs": 1}}
    (tmp_path / "bad.yaml").write_text("train: [unclosed")
    assert main(["train", str(tmp_path / "bad.yaml"), "--out", str(out)]) == 1
    assert "is not valid YAML" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    """SIGINT to a `pyclr train` process: exit status 130 (128 + SIGINT, as a shell expects), a
    message saying a checkpoint was saved, and the checkpoint."""
    out = tmp_path / "run"
    endless = {**TINY, "train": {**TINY["train"], "epochs": 100_000}}
    # SIGINT at its default in the child, as in a terminal: a background job of a
    # non-interactive shell (how CI may run the suite) starts with it ignored, and exec keeps that
    proc = subprocess.Popen([sys.executable, "-m", "pyclr", "train", write_config(tmp_path, endless), "--out",
                             str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():  # an epoch done
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no epoch finished in 120 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "pyclr train: interrupted (a checkpoint was saved in the run folder; run again to resume)" in err
    assert "Traceback" not in err
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert saved["step"] >= 3 and saved["config"]["epochs"] == 100_000


@pytest.mark.parametrize("command", ["train", "demo"])
def test_ctrl_c_message_says_what_running_again_does(tmp_path, monkeypatch, capsys, command):
    # "a checkpoint was saved ...; run again to resume" was printed for the demo (which always
    # starts over) and for a train interrupted before its first step (no checkpoint)
    from pyclr.train import experiment

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "run_experiment", interrupted)
    out = str(tmp_path / "run")
    argv = ["train", write_config(tmp_path, TINY), "--out", out] if command == "train" else ["demo", "--out", out]
    assert main(argv + ["--quiet"]) == 130
    err = capsys.readouterr().err
    expected = {"train": "before the first step: no checkpoint was saved",
                "demo": "the demo starts over when run again"}[command]
    assert f"pyclr {command}: interrupted ({expected})" in err and "resume" not in err


def test_loss_without_a_gpu_names_its_command(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["loss", "--device", "cuda"]) == 2
    assert capsys.readouterr().err.startswith("pyclr loss: --device cuda was asked for but no GPU is visible")


@pytest.mark.parametrize("argv", [["train", "demo", "--out", "x", "--epochz", "3"],
                                  # a prefix of an option is not the option: --epoch would change
                                  # meaning, or break, once another --epoch... option exists
                                  ["train", "demo", "--out", "x", "--epoch", "3"],
                                  ["loss", "--batch", "8"], ["masks", "--check", "x"]])
def test_unknown_option_exits_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["loss", "--batch-size", "abc"], "argument --batch-size: expected an integer >= 1, got 'abc'"),
    (["loss", "--temperature", "nan"], "argument --temperature: expected a finite number > 0, got 'nan'"),
    (["loss", "--temperature", "warm"], "argument --temperature: expected a finite number > 0, got 'warm'"),
    (["train", "demo", "--out", "x", "--seed", "1.5"], "argument --seed: expected an integer, got '1.5'"),
    # --set's form is a usage error too (it was a run error, exit 1 without the usage)
    (["train", "demo", "--out", "x", "--set", "model.width=2"], "argument --set: unknown section 'model'"),
    (["train", "demo", "--out", "x", "--set", "train.epochs"], "argument --set: expected section.key=value"),
    # int() takes these; an integer option does not
    (["train", "demo", "--out", "x", "--epochs", "1_0"], "argument --epochs: expected an integer >= 1, got '1_0'"),
    (["loss", "--seed", " 7"], "argument --seed: expected an integer, got ' 7'"),
    (["masks", "--size", "2_56"], "argument --size: expected an integer, got '2_56'"),
    (["masks", "--seed", "\u0661"], "argument --seed: expected an integer, got '\u0661'"),
    # torch's "Overflow when unpacking long long" (exit 1) before
    (["loss", "--seed", "99999999999999999999"], "argument --seed: expected an integer in [0, 2**63 - 1]"),
    (["masks", "--seed", "-1"], "argument --seed: expected an integer in [0, 2**63 - 1]"),
])
def test_bad_option_values_are_usage_errors_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_help_shows_examples_and_every_option_says_what_it_is(capsys):
    import argparse

    from pyclr.cli import parser

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "examples:\n  pyclr demo" in capsys.readouterr().out
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    undocumented = [f"{name} {'/'.join(action.option_strings) or action.dest}"
                    for name, sub in commands.choices.items() for action in sub._actions
                    if not action.help and not isinstance(action, argparse._HelpAction)]
    assert not undocumented, undocumented


def test_demo_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert main(["demo", "--out", out, "--epochs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "linear probe accuracy" in printed
    report = json.load(open(os.path.join(out, "report.json")))
    assert report["probe_accuracy"] > 0.5  # ten digit classes: far above chance after one epoch
    if "masks: skipped" not in printed:
        assert sorted(os.listdir(os.path.join(out, "masks"))) == [f"digit{i}_kmeans.png" for i in range(4)]
    # it starts over in its own folder, and refuses another run's
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(TINY))
    capsys.readouterr()
    assert main(["demo", "--out", str(other), "--epochs", "1", "--quiet"]) == 1
    assert "holds another run" in capsys.readouterr().err
    assert json.loads((other / "config.json").read_text()) == TINY
    # a pyclr train run of the demo preset with other settings is another run too
    from pyclr.train.presets import resolve_config
    (other / "config.json").write_text(json.dumps(resolve_config("demo", ["train.lr=0.5"])))
    assert main(["demo", "--out", str(other), "--epochs", "1", "--quiet"]) == 1


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m pyclr ARGS`, which must succeed."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "pyclr",
               *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.distributed
def test_torchrun_trains_on_every_rank_and_reports_once(tmp_path):
    """`torchrun --nproc_per_node 2 -m pyclr train`: one report, one config, one printout."""
    out = tmp_path / "run"
    done = torchrun("train", write_config(tmp_path), "--out", str(out), "--quiet", "--no-baseline")
    assert done.stdout.count("trained 2 epochs") == 1 and done.stdout.count("linear probe accuracy") == 1, done.stdout
    report = json.loads((out / "report.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert report["world_size"] == 2 and 0 <= report["probe_accuracy"] <= 1
    assert [m["epoch"] for m in metrics] == [0, 1] and report["last_epoch"] == metrics[-1]
    assert json.loads((out / "config.json").read_text()) == report["config"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl", "report.json"]


@pytest.mark.distributed
def test_torchrun_demo_prints_once(tmp_path):
    out = tmp_path / "demo"
    done = torchrun("demo", "--out", str(out), "--epochs", "1", "--quiet")
    for line in ("extension_loaded", "pyclr demo:", "trained 1 epochs", "linear probe accuracy", "masks:"):
        assert done.stdout.count(line) == 1, (line, done.stdout)
    assert json.loads((out / "report.json").read_text())["world_size"] == 2


@pytest.mark.parametrize("world,message", [
    ("2", "WORLD_SIZE=2 in the environment asks for several processes, but torch.distributed cannot join "
          "them (environment variable RANK expected, but not set): start them with torchrun, or unset WORLD_SIZE"),
    ("two", "WORLD_SIZE: expected the number of processes (an integer), got 'two' from the environment"),
    ("\u00b2", "WORLD_SIZE: expected the number of processes (an integer), got '\u00b2'"),  # isdigit() took it
])
def test_a_stray_world_size_is_named(tmp_path, capsys, monkeypatch, world, message):
    # a WORLD_SIZE left in the shell (not torchrun's) failed with torch's rendezvous error or int()'s
    monkeypatch.setenv("WORLD_SIZE", world)
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "run"
    assert main(["train", write_config(tmp_path), "--out", str(out), "--quiet"]) == 1
    assert f"pyclr train: {message}" in capsys.readouterr().err
    assert not out.exists()


def test_eval_label_error_names_the_label_the_items_carry():
    from pyclr.train.experiment import check_label

    items = [(torch.zeros(1, 4, 4), {"digits": torch.zeros(10, dtype=torch.long)})]
    with pytest.raises(ValueError, match=r"eval.train's items carry digits = an int64 tensor of shape \(10,\)$"):
        check_label(items, None, "eval.train")  # no eval.label: the items' one label is the one picked
    check_label([(torch.zeros(1, 4, 4), {"label": torch.tensor(3)})], None, "eval.train")  # a class: fine
    check_label([(torch.zeros(1, 4, 4), 3)], "label", "eval.train")


def test_starting_over_leaves_no_report_or_checkpoint_of_the_old_run(tmp_path, monkeypatch):
    # --no-resume killed before its first checkpoint left the old run's checkpoint and report
    # beside the new config.json: a rerun 'resumed' the old weights under the new settings
    out = tmp_path / "run"
    assert main(["train", write_config(tmp_path), "--out", str(out), "--quiet", "--no-baseline"]) == 0
    assert (out / "report.json").exists() and (out / "checkpoint.pt").exists()
    import functools

    import pyclr.train.experiment as experiment

    @functools.wraps(experiment.train)  # its signature gives the default batch size
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "train", killed)
    assert main(["train", write_config(tmp_path), "--out", str(out), "--quiet", "--no-baseline", "--no-resume",
                 "--set", "dataset.seed=7"]) != 0  # the CLI reports the interrupt
    assert not (out / "report.json").exists()


def test_warnings_are_one_line_at_the_shell(tmp_path, capsys):
    # Python's format printed the file, line number and source line of the warnings.warn call
    out = str(tmp_path / "run")
    assert main(["train", write_config(tmp_path), "--out", out, "--quiet", "--no-baseline", "--set", "train.lr=0"]) == 0
    err = capsys.readouterr().err
    assert "pyclr train: UserWarning: lr=0: the weights never change" in err
    assert "warnings.warn(" not in err and ".py:" not in err
