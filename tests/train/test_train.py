"""pyclr.train: the optimiser, the schedule, checkpoints, exact resume, MoCo, torchrun-style
distributed training on gloo."""
import copy
import json
import math
import os
import pickle
import signal
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.optim.optimizer import register_optimizer_step_post_hook

import pyclr
from pyclr.losses import NTXentLoss
from pyclr.models import ProjectionHead, SmallConvNet
from pyclr.train import LARS, MoCo, default_lr, load_checkpoint, param_groups, warmup_cosine
from pyclr.train.checkpoint import save_atomic
from pyclr.train.distributed import DistributedContext, end_process_group

from ..conftest import TORCH_VERSION, exit_spawned_rank


def images(n=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(1, 12, 12, generator=gen), i % 3) for i in range(n)]


def jitter(x, gen):
    """A random augmentation whose randomness comes from the generator alone."""
    return (x + 0.1 * torch.randn(x.shape, generator=gen, device=x.device)).clamp(0, 1)


def model(seed=0):
    torch.manual_seed(seed)
    return SmallConvNet(in_channels=1, input_size=12, feature_dim=16)


def small_head(seed=0):
    torch.manual_seed(seed + 1)
    return ProjectionHead(16, 16, 8, num_layers=2, batch_norm=False)


def weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_pyclr_train_is_both_the_package_and_the_function():
    # pyclr.train was the function, which hid the package: pyclr.train.train_supervised and,
    # after `import pyclr.train.presets`, pyclr.train.presets were AttributeErrors
    import importlib
    import inspect

    import pyclr.train.presets

    assert pyclr.train.presets is importlib.import_module("pyclr.train.presets")
    assert pyclr.train.train_supervised is importlib.import_module("pyclr.train.supervised").train_supervised
    assert inspect.signature(pyclr.train) == inspect.signature(pyclr.train.train)
    with pytest.raises(TypeError, match="encoder: expected an nn.Module"):  # the call is train(...)'s
        pyclr.train("not a model", images())
    # pickled by name like the function it was (spawn workers, joblib, deepcopy)
    assert pickle.loads(pickle.dumps(pyclr.train)) is pyclr.train
    assert copy.deepcopy({"fn": pyclr.train})["fn"] is pyclr.train


# --- optimiser and schedule ------------------------------------------------------------------

def test_lars_step_matches_formula():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    w.grad, b.grad = torch.tensor([[0.6, 0.8]]), torch.tensor([0.5])
    opt = LARS([{"params": [w], "exclude": False}, {"params": [b], "exclude": True, "weight_decay": 0.0}],
               lr=0.1, momentum=0.9, weight_decay=0.01, eta=0.001)
    opt.step()
    g = torch.tensor([[0.6, 0.8]]) + 0.01 * torch.tensor([[3.0, 4.0]])
    trust = 0.001 * 5 / g.norm()
    assert torch.allclose(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.1 * trust * g)
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.1 * 0.5]))  # excluded: plain SGD
    w.grad, b.grad = torch.tensor([[0.6, 0.8]]), torch.tensor([0.5])
    before = b.detach().clone()
    opt.step()  # momentum: v = 0.9 * 0.5 + 0.5
    assert torch.allclose(b.detach(), before - 0.1 * (0.9 * 0.5 + 0.5))


def test_param_groups_exclude_biases_and_norms():
    head = ProjectionHead(4, 8, 2, num_layers=2)
    decay, exclude = param_groups([head], 1e-6)
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in exclude["params"])
    assert exclude["weight_decay"] == 0 and exclude["exclude"]
    assert len(decay["params"]) + len(exclude["params"]) == len(list(head.parameters()))


def test_warmup_cosine():
    values = [warmup_cosine(s, 100, 10) for s in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[55] == pytest.approx(0.5) and values[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def _parameter():
    return [torch.nn.Parameter(torch.ones(2, 2))]


# the public helpers took these unchecked: NaN weights after a step, a negative rate, KeyError
@pytest.mark.parametrize("call,error,match", [
    (lambda: LARS(_parameter(), lr=float("inf")), ValueError, "lr: expected a finite number >= 0"),
    (lambda: LARS(_parameter(), lr="0.1"), TypeError, "lr: expected a number"),
    (lambda: LARS(_parameter(), lr=0.1, momentum=float("nan")), ValueError, r"momentum: .* in \[0, 1\]"),
    (lambda: LARS(_parameter(), lr=0.1, momentum=-1), ValueError, r"momentum: .* in \[0, 1\]"),
    (lambda: LARS(_parameter(), lr=0.1, weight_decay=-1), ValueError, "weight_decay: expected"),
    (lambda: LARS(_parameter(), lr=0.1, eta=-1), ValueError, "eta: expected"),
    (lambda: default_lr("LARS", 256), ValueError, "optimizer: expected one of 'lars'"),
    (lambda: default_lr("lars", -256), ValueError, "batch_size: expected an int >= 1"),
    (lambda: warmup_cosine(-5, 10, 2), ValueError, "step: expected an int >= 0"),
    (lambda: warmup_cosine(1, 10, float("nan")), TypeError, "warmup_steps: expected an int"),
    (lambda: warmup_cosine(1, 0, 0), ValueError, "total_steps: expected an int >= 1"),
    (lambda: param_groups(model(), "x"), TypeError, "weight_decay: expected a number"),
    (lambda: param_groups("encoder", 0.1), TypeError, "modules: expected a module or a list of modules"),
])
def test_optimiser_helpers_check_their_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_param_groups_takes_one_module():
    encoder = model()
    assert param_groups(encoder, 0.1) == param_groups([encoder], 0.1)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_schedule_sets_the_rate_each_step(schedule):
    rates = []
    pyclr.train(model(), images(), epochs=4, batch_size=32, head=small_head(), progress=False, lr=0.5,
                warmup_epochs=1, schedule=schedule, callbacks=[lambda info: rates.append(info["lr"])])
    assert len(rates) == 12
    assert rates[:3] == pytest.approx([0.5 / 3, 1.0 / 3, 0.5])  # warm-up over the first epoch
    if schedule == "constant":
        assert rates[3:] == pytest.approx([0.5] * 9)
    else:
        assert rates[3] == pytest.approx(0.5) and all(a > b for a, b in zip(rates[3:], rates[4:]))


def test_a_checkpoint_from_before_schedule_existed_resumes_as_cosine(tmp_path):
    pyclr.train(model(), images(), epochs=1, batch_size=32, head=small_head(), progress=False, out_dir=str(tmp_path))
    path = tmp_path / "checkpoint.pt"
    saved = torch.load(path, weights_only=False)
    del saved["config"]["schedule"]
    torch.save(saved, path)
    result = pyclr.train(model(), images(), epochs=1, batch_size=32, head=small_head(), progress=False,
                         out_dir=str(tmp_path))  # resumes (at its end) instead of refusing
    assert len(result.history) == 1
    with pytest.raises(ValueError, match=r"resume: .* other settings \(schedule: 'cosine' -> 'constant'\)"):
        pyclr.train(model(), images(), epochs=1, batch_size=32, head=small_head(), progress=False,
                    out_dir=str(tmp_path), schedule="constant")


def test_default_lr_scales_with_the_batch():
    assert default_lr("lars", 256) == pytest.approx(0.3) and default_lr("lars", 4096) == pytest.approx(4.8)
    assert default_lr("sgd", 512) == pytest.approx(0.12) and default_lr("adam", 4096) == 1e-3
    for optimizer, expected in (("lars", 0.3 * 32 / 256), ("sgd", 0.06 * 32 / 256), ("adam", 1e-3)):
        rates = []
        result = pyclr.train(model(), images(), epochs=1, batch_size=32, head=small_head(), progress=False,
                             optimizer=optimizer, warmup_epochs=0, schedule="constant",
                             callbacks=[lambda info: rates.append(info["lr"])])
        assert rates == pytest.approx([expected] * 3), optimizer
        assert result.history[-1]["lr"] == pytest.approx(expected)


# --- checkpoints and resume ------------------------------------------------------------------

def test_save_atomic_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    save_atomic({"step": 1}, path)
    with pytest.raises(Exception):
        save_atomic({"step": 2, "bad": lambda: None}, path)  # lambdas do not pickle
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_run_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    # mkstemp's 0600 survived the rename: colleagues sharing a run folder could not read its
    # checkpoint.pt and config.json (metrics.jsonl and report.json were 0644)
    previous = os.umask(umask)
    try:
        with pytest.MonkeyPatch.context() as patch:  # read the umask, it is process-wide: another
            patch.setattr(os, "umask", None)         # thread's files would get the changed one
            save_atomic({"step": 1}, str(tmp_path / "checkpoint.pt"))
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(previous)
    assert os.stat(tmp_path / "checkpoint.pt").st_mode & 0o777 == 0o666 & ~umask
    assert os.stat(tmp_path / "checkpoint.pt").st_mode & 0o777 == os.stat(tmp_path / "plain").st_mode & 0o777


class InterruptsWhilePickled:
    """Sends this process SIGINT (Ctrl-C) from inside torch.save."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGINT)
        return int, (7,)


def test_ctrl_c_during_a_save_lets_it_finish_then_interrupts(tmp_path):
    # Python's own Ctrl-C handler, also where the suite runs as a background job of a
    # non-interactive shell (which starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        path = str(tmp_path / "checkpoint.pt")
        with pytest.raises(KeyboardInterrupt):
            save_atomic({"step": 3, "value": InterruptsWhilePickled()}, path)
        # (the test object pickles as a call of int, which load_checkpoint rightly refuses)
        assert torch.load(path, weights_only=False) == {"step": 3, "value": 7}
        assert os.listdir(tmp_path) == ["checkpoint.pt"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("method", ["simclr", "moco", "generalized"])
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, method):
    # "generalized": SimCLR with the SWD loss, whose projections and prior samples each step
    # draws from the run's seed (drawn from the global RNG, the resumed run differed)
    extra = {"moco": {"queue_size": 64}, "generalized": {"method": "simclr", "loss": "generalized"}}.get(method, {})
    options = dict(epochs=3, batch_size=32, augment=jitter, head=small_head(), progress=False, seed=3,
                   method=method, lr=0.5, device="cpu") | extra
    # bit for bit: the CPU's promise
    straight = pyclr.train(model(), images(), out_dir=str(tmp_path / "a"), **options)

    def kill_at_step_5(info):
        if info["step"] == 5:  # mid-epoch (3 steps per epoch)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pyclr.train(model(), images(), out_dir=str(tmp_path / "b"), callbacks=[kill_at_step_5],
                    **options | {"head": small_head()})
    saved = load_checkpoint(str(tmp_path / "b" / "checkpoint.pt"))
    assert saved["step"] == 5
    if method == "moco":
        assert saved["moco"]["queue"].shape == (64, 8) and int(saved["moco"]["pointer"]) == (5 * 64) % 64
    # a fresh process would build fresh modules: resume from the checkpoint alone
    resumed = pyclr.train(model(seed=99), images(), out_dir=str(tmp_path / "b"), **options | {"head": small_head(99)})
    for name, value in weights(straight.encoder).items():
        assert torch.equal(value, resumed.encoder.state_dict()[name]), name
    for name, value in weights(straight.head).items():
        assert torch.equal(value, resumed.head.state_dict()[name]), name
    assert [h["step"] for h in resumed.history] == [3, 6, 9]
    # the interrupted epoch's record covers its steps before the kill too (it averaged the
    # steps after the resume only)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    for run in "ab":
        lines = open(tmp_path / run / "metrics.jsonl").read().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]


@pytest.mark.parametrize("interrupted_epoch", [1, 2])  # 2: the last one
def test_ctrl_c_in_on_epoch_end_loses_no_epoch_record(tmp_path, interrupted_epoch):
    # the checkpoint taken at the interrupt had the epoch's steps but not its record, and the
    # resumed run went on with the next epoch: that record (and its k-NN, say) was gone for good;
    # interrupted in the last epoch, the rerun returned at once without it
    options = dict(epochs=3, batch_size=32, augment=jitter, progress=False, seed=3, lr=0.5, device="cpu")
    calls = []

    def on_epoch_end(epoch, encoder, interrupt=False):
        calls.append(epoch)
        if interrupt and epoch == interrupted_epoch:
            raise KeyboardInterrupt  # e.g. Ctrl-C during a long evaluation
        return {"probe": float(sum(p.detach().sum() for p in encoder.parameters()))}

    straight = pyclr.train(model(), images(), head=small_head(), on_epoch_end=on_epoch_end, **options)
    with pytest.raises(KeyboardInterrupt):
        pyclr.train(model(), images(), head=small_head(), out_dir=str(tmp_path),
                    on_epoch_end=lambda e, enc: on_epoch_end(e, enc, interrupt=True), **options)
    calls.clear()
    resumed = pyclr.train(model(seed=99), images(), head=small_head(99), out_dir=str(tmp_path),
                          on_epoch_end=on_epoch_end, **options)
    assert calls == list(range(interrupted_epoch, 3))  # the interrupted epoch's evaluation is redone

    def kept(history):
        return [{k: h[k] for k in ("epoch", "step", "loss", "lr", "probe")} for h in history]

    assert kept(resumed.history) == kept(straight.history)
    lines = open(tmp_path / "metrics.jsonl").read().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]


def test_a_run_that_lost_a_record_to_the_older_loop_is_not_given_one_twice(tmp_path):
    # the loop before 2026-12-07 dropped the record of an epoch interrupted in on_epoch_end and
    # went on: its finished run has records for epochs 0 and 2 only. Counting records, the new
    # loop took epoch 2 as unrecorded and appended it again
    options = dict(epochs=3, batch_size=32, augment=jitter, progress=False, seed=3, lr=0.5, device="cpu")
    pyclr.train(model(), images(), head=small_head(), out_dir=str(tmp_path), **options)
    path = str(tmp_path / "checkpoint.pt")
    saved = load_checkpoint(path)
    del saved["history"][1]
    save_atomic(saved, path)
    calls = []
    again = pyclr.train(model(), images(), head=small_head(), out_dir=str(tmp_path),
                        on_epoch_end=lambda epoch, encoder: calls.append(epoch), **options)
    assert [h["epoch"] for h in again.history] == [0, 2] and calls == []


def test_ctrl_c_inside_an_optimizer_step_is_held_until_the_step_ends(tmp_path):
    # a signal between the optimizer's update and the step count saved the new weights with
    # the old step: the resumed run took that step twice
    options = dict(epochs=2, batch_size=32, augment=jitter, progress=False, seed=3, lr=0.5, device="cpu")
    straight = pyclr.train(model(), images(), head=small_head(), **options)
    updates = []

    def interrupt_after_fourth_update(optimizer, args, kwargs):
        updates.append(1)
        if len(updates) == 4:
            signal.raise_signal(signal.SIGINT)

    handle = register_optimizer_step_post_hook(interrupt_after_fourth_update)
    try:
        with pytest.raises(KeyboardInterrupt):
            pyclr.train(model(), images(), head=small_head(), out_dir=str(tmp_path), **options)
    finally:
        handle.remove()
    assert load_checkpoint(str(tmp_path / "checkpoint.pt"))["step"] == 4
    resumed = pyclr.train(model(seed=99), images(), head=small_head(99), out_dir=str(tmp_path), **options)
    for name, value in weights(straight.encoder).items():
        assert torch.equal(value, resumed.encoder.state_dict()[name]), name
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]


def test_metrics_log_matches_the_checkpoint_after_a_failed_save(tmp_path, monkeypatch):
    # the epoch's line was written, then its checkpoint failed: the resumed run wrote the
    # epoch again (metrics.jsonl listed epochs 0, 1, 1, 2)
    options = dict(epochs=3, batch_size=32, progress=False, head=small_head(), out_dir=str(tmp_path))
    from pyclr.train import checkpoint as ckpt
    real_save = ckpt.save_atomic
    saves = []

    def failing_second_save(state, path):
        saves.append(1)
        if len(saves) == 2:
            raise OSError("disk full")
        real_save(state, path)

    monkeypatch.setattr(ckpt, "save_atomic", failing_second_save)
    with pytest.raises(OSError, match="disk full"):
        pyclr.train(model(), images(), **options)
    monkeypatch.setattr(ckpt, "save_atomic", real_save)
    result = pyclr.train(model(), images(), **options | {"head": small_head()})
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl").read().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1, 2] == [h["epoch"] for h in result.history]


def test_training_lowers_the_loss_and_logs(tmp_path):
    result = pyclr.train(model(), images(192), epochs=6, batch_size=64, augment=jitter, head=small_head(),
                         progress=False, lr=1.0, warmup_epochs=1, out_dir=str(tmp_path),
                         on_epoch_end=lambda epoch, enc: {"probe": float(epoch)})
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert all(math.isfinite(h["images_per_s"]) and h["probe"] == h["epoch"] for h in result.history)
    assert result.checkpoint_path == str(tmp_path / "checkpoint.pt")


class _Payload:
    """Unpickling this runs a command: what a malicious checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_a_checkpoint_runs_no_code_from_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"encoder": {}, "step": 0, "payload": _Payload(str(marker))}, path)
    with pytest.raises(ValueError, match="does not unpickle"):
        load_checkpoint(str(path))
    assert not marker.exists()
    with pytest.raises(ValueError, match="does not unpickle"):  # resume reads it the same way
        pyclr.train(model(), images(), epochs=1, batch_size=32, head=small_head(), progress=False,
                    out_dir=str(tmp_path))
    assert not marker.exists()
    path.write_bytes(bytes(range(100)))  # garbage is unreadable, not 'objects'
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(str(path))


def test_numpy_metrics_resume(tmp_path):
    # on_epoch_end's numpy and tensor scalars are stored as Python numbers: the checkpoint must
    # load with weights_only=True, which knows no numpy globals
    import numpy as np

    def metrics(epoch, encoder):
        return {"probe": np.float64(0.5), "knn": np.float32(0.25), "n": np.int64(3), "t": torch.tensor(1.5)}

    options = dict(epochs=1, batch_size=32, head=small_head(), progress=False, out_dir=str(tmp_path))
    pyclr.train(model(), images(), on_epoch_end=metrics, **options)
    saved = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert [type(saved["history"][0][k]) for k in ("probe", "knn", "n", "t")] == [float, float, int, float]
    result = pyclr.train(model(), images(), on_epoch_end=metrics, **options)  # resumes: nothing left
    assert result.history == saved["history"]


def test_metrics_log_is_strict_json(tmp_path):
    # a NaN metric was written as a bare NaN token, which strict JSON readers refuse
    options = dict(epochs=1, batch_size=32, head=small_head(), progress=False, out_dir=str(tmp_path))
    pyclr.train(model(), images(), on_epoch_end=lambda epoch, encoder: {"knn": float("nan")}, **options)
    line = (tmp_path / "metrics.jsonl").read_text()
    assert json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in {line}"))["knn"] is None


@pytest.mark.parametrize("returned,error,match", [
    # an array failed inside json.dumps after the epoch; "loss" replaced the epoch's loss silently
    ({"acc": __import__("numpy").zeros(3)}, TypeError, "on_epoch_end: 'acc' is a ndarray, which metrics.jsonl"),
    ({"loss": 0.1}, ValueError, "on_epoch_end: 'loss' is the epoch record's own key"),
    ({3: 0.1}, TypeError, "on_epoch_end: expected str keys"),
])
def test_epoch_metrics_are_checked(returned, error, match):
    with pytest.raises(error, match=match):
        pyclr.train(model(), images(), epochs=1, batch_size=32, head=small_head(), progress=False,
                    on_epoch_end=lambda epoch, encoder: returned)


@pytest.mark.parametrize("options,message", [
    (dict(optimizer="adam", momentum=0.5), "momentum=0.5 is ignored: optimizer='adam' has no momentum"),
    (dict(loss="generalized", temperature=0.1), "temperature=0.1 is ignored: loss='generalized' takes no temperature"),
    (dict(queue_size=64), "queue_size=64 is ignored: method='simclr' has no queue"),
    (dict(moco_momentum=0.5), "moco_momentum=0.5 is ignored: method='simclr' has no momentum encoder"),
    (dict(lr=0.0), "lr=0: the weights never change"),
    (dict(warmup_epochs=1.5), r"warmup_epochs=1.5 is longer than the run \(epochs=1\): the rate never reaches lr="),
])
def test_options_the_run_ignores_are_named(options, message):
    with pytest.warns(UserWarning, match=message):
        pyclr.train(model(), images(64), epochs=1, batch_size=32, head=small_head(), progress=False, **options)


def test_no_warning_for_defaults_or_used_options():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pyclr.train(model(), images(64), epochs=1, batch_size=32, head=small_head(), progress=False,
                    optimizer="adam", momentum=0.9, method="moco", queue_size=64, moco_momentum=0.9)
        pyclr.train(model(), images(64), epochs=1, batch_size=32, head=small_head(), progress=False,
                    warmup_epochs=1)  # warm-up over the whole run reaches lr at its last step


@pytest.mark.parametrize("first,then,match", [
    ({}, {"batch_size": 16}, "batch_size: 32 -> 16"),
    # these resumed silently (or failed inside torch: fp32 -> fp16's loss scaler, the queue size)
    ({}, {"precision": "bf16"}, "precision: 'fp32' -> 'bf16'"),
    ({"precision": "fp16"}, {"precision": "fp32"}, "precision: 'fp16' -> 'fp32'"),
    ({}, {"momentum": 0.5}, "momentum: 0.9 -> 0.5"),
    ({}, {"loss": "generalized"}, "loss: 'nt_xent' -> 'generalized'"),
    ({}, {"n": 128}, "dataset_size: 96 -> 128"),
    ({"method": "moco", "queue_size": 64}, {"queue_size": 32}, "queue_size: 64 -> 32"),
    # a loss module was recorded by its class name alone: another temperature resumed silently
    ({"loss": NTXentLoss(temperature=0.2)}, {"loss": NTXentLoss(temperature=0.5)},
     "loss_settings: \"temperature=0.2, .*\" -> \"temperature=0.5, "),
])
def test_resume_refuses_other_settings(tmp_path, first, then, match):
    def run(options):
        options = dict(epochs=1, batch_size=32, progress=False, out_dir=str(tmp_path)) | options
        pyclr.train(model(), images(options.pop("n", 96)), head=small_head(), **options)

    run(first)
    with pytest.raises(ValueError, match=r"resume: .* other settings \(" + match):
        run(first | then)


def test_a_plain_function_as_the_loss_trains_and_resumes(tmp_path):
    # loss_settings read loss.extra_repr(), which a function has not: every run failed
    options = dict(epochs=1, batch_size=32, head=small_head(), progress=False, out_dir=str(tmp_path))
    pyclr.train(model(), images(), loss=lambda a, b: pyclr.losses.nt_xent(a, b), **options)
    again = pyclr.train(model(), images(), loss=lambda a, b: pyclr.losses.nt_xent(a, b), **options)
    assert [h["epoch"] for h in again.history] == [0]


def test_resume_refuses_another_model(tmp_path):
    pyclr.train(model(), images(), epochs=1, batch_size=32, head=small_head(), progress=False, out_dir=str(tmp_path))
    other = SmallConvNet(in_channels=1, input_size=12, feature_dim=16)
    other.conv2 = torch.nn.Sequential(torch.nn.Conv2d(32, 48, 3, stride=2, padding=1), torch.nn.ReLU())
    with pytest.raises(ValueError, match="resume: the encoder in .* does not fit the encoder given"):
        pyclr.train(other, images(), epochs=1, batch_size=32, head=small_head(), progress=False, out_dir=str(tmp_path))


@pytest.mark.parametrize("step,history", [(4, [1]), ("4", []), (4.5, []), (-5, []), (10 ** 6, [])])
def test_resume_refuses_a_checkpoint_with_a_bad_step_or_history(tmp_path, step, history):
    # a hand-edited checkpoint: AttributeError deep in the loop (a full traceback from the CLI),
    # or a 'resumed' run with a bogus history
    options = dict(epochs=2, batch_size=32, head=small_head(), progress=False, out_dir=str(tmp_path))
    pyclr.train(model(), images(), **options)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    saved["step"], saved["history"] = step, history
    save_atomic(saved, str(tmp_path / "checkpoint.pt"))
    encoder = model()
    before = weights(encoder)
    with pytest.raises(ValueError, match=r"resume: .*checkpoint.pt holds no step in 0..6 and list of epoch records"):
        pyclr.train(encoder, images(), **options)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())  # refused before loading


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="out_dir: .* is not writable"):
        pyclr.train(model(), images(), epochs=1, batch_size=32, progress=False, out_dir=str(blocker / "run"))


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "byol"}, "method: expected one of"),
    ({"optimizer": "adamw"}, "optimizer: expected one of"),
    ({"precision": "int8"}, "precision: expected one of"),
    ({"batch_size": 1000}, "batch_size: 1000 is larger than the dataset"),
    ({"epochs": 0}, "epochs: expected an int >= 1"),
    ({"loss": "triplet"}, "loss: expected 'nt_xent', 'generalized' or a loss module"),
    ({"schedule": "step"}, "schedule: expected one of 'cosine', 'constant'"),
    ({"method": "moco", "loss": "generalized"}, "loss: MoCo uses its own InfoNCE"),
    # these passed the checks and failed inside torch: a float32 overflow in the optimizer's
    # arithmetic, an allocation of 25 TB for the queue; batch 1 trained at a loss of exactly 0
    ({"lr": 1e300}, r"lr: expected a finite number in \[0, 10000000000.0\], got 1e\+300"),
    ({"weight_decay": 1e300}, r"weight_decay: expected a finite number in \[0, 10000000000.0\]"),
    ({"method": "moco", "queue_size": 10 ** 12}, r"queue_size: expected an int in 1..2\*\*24"),
    ({"batch_size": 1}, "batch_size: expected at least 2 for NT-Xent, got 1"),
    ({"batch_size": 1, "loss": NTXentLoss()}, "batch_size: expected at least 2 for NT-Xent, got 1"),
    ({"head": {"foo": 1}}, r"head: unknown options \['foo'\]; it takes in_dim"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pyclr.train(model(), images(), **({"epochs": 1, "batch_size": 32, "progress": False} | kwargs))


@pytest.mark.parametrize("kwargs,error,match", [
    # each failed inside torch or Python without naming the argument
    ({"augment": "simclr_cifar"}, TypeError, "augment: expected a callable"),
    ({"callbacks": print}, TypeError, "callbacks: expected a list of callables"),
    ({"callbacks": [print, 3]}, TypeError, "callbacks: expected callables cb.info., got 3 among them"),
    ({"on_epoch_end": "knn"}, TypeError, "on_epoch_end: expected a callable"),
    ({"out_dir": 123}, TypeError, "out_dir: expected a folder path or None"),
    ({"device": "gpu"}, ValueError, "device: expected a device such as 'cpu'"),
    ({"dataset": iter([])}, TypeError, "dataset: expected a sized, indexable dataset"),
    ({"encoder": "resnet18"}, TypeError, "encoder: expected an nn.Module"),
    ({"loss": pyclr.losses.NTXentLoss(reduction="none")}, ValueError,
     r"loss: expected the loss to return a single value .*got shape \(64,\)"),
    # the class for an instance: called as NTXentLoss(z1, z2), 'temperature: expected a number, got Tensor'
    ({"loss": pyclr.losses.NTXentLoss}, TypeError, r"loss: expected a loss module instance, got the class "
                                                    r"NTXentLoss \(pass NTXentLoss\(...\)\)"),
    ({"loss": lambda z1, z2: torch.tensor(1.0)}, ValueError, "loss: its value does not depend on the embeddings"),
    # views of other sizes: a view of 30 images paired rows 30 and 31 with other images' views, silently
    ({"augment": lambda x, g: x[2:]}, ValueError, r"augment: expected a tensor of the batch's 32 images, got shape "
                                                  r"\(30, 1, 12, 12\)"),
    ({"augment": lambda x, g: x.numpy()}, ValueError, "augment: expected a tensor of the batch's 32 images, got ndarray"),
    # torch.stack's 'stack expects each tensor to be equal size', and an IndexError for ()
    ({"dataset": images(48) + [(torch.rand(1, 13, 12), 0) for _ in range(48)]}, ValueError,
     r"dataset: expected images of one shape and dtype to batch, got torch.float32 of shape \(1, 12, 12\) and "
     r"torch.float32 of shape \(1, 13, 12\)"),
    ({"dataset": [()] * 64}, TypeError, "dataset: expected items that are an image tensor or .image, labels., got tuple"),
])
def test_bad_argument_types_are_named(kwargs, error, match):
    options = {"encoder": model(), "dataset": images(), "epochs": 1, "batch_size": 32, "progress": False,
               "head": small_head()} | kwargs
    with pytest.raises(error, match=match):
        pyclr.train(options.pop("encoder"), options.pop("dataset"), **options)


def test_supervised_augment_is_checked():
    from pyclr.train import train_supervised

    with pytest.raises(TypeError, match="augment: expected a callable"):
        train_supervised(model(), images(), label=None, epochs=1, augment="simclr_cifar")


def test_channel_mismatch_fails_before_training(tmp_path):
    rgb = [(torch.rand(3, 12, 12), 0) for _ in range(64)]
    with pytest.raises(ValueError, match=r"dataset: items have 3 channels, but the encoder takes 1 \(its in_channels\)"):
        pyclr.train(model(), rgb, epochs=1, batch_size=32, progress=False, out_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_generalized_loss_under_bf16_autocast():
    """bf16 autocast (a GPU's default) around the SWD loss: its kernel multiplies in fp32."""
    result = pyclr.train(model(), images(), epochs=1, batch_size=32, loss="generalized", precision="bf16",
                         head=small_head(), progress=False, augment=jitter)
    assert math.isfinite(result.history[-1]["loss"])


@pytest.mark.parametrize("options", [
    {"channels_last": True},
    {"precision": "fp16"},  # autocast to float16 on the CPU, with loss scaling
    pytest.param({"compile": True}, marks=pytest.mark.slow),  # inductor's first compile: ~15 s on 2 cores
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_trains_on_cpu_with_each_option(tmp_path, options):
    """The options a GPU user picks also run on the CPU: finite losses, weights that moved,
    a checkpoint that loads (the CUDA runs are test_trains_on_cuda)."""
    encoder = model()
    before = weights(encoder)
    result = pyclr.train(encoder, images(), epochs=1, batch_size=32, augment=jitter, head=small_head(),
                         device="cpu", progress=False, lr=1.0, out_dir=str(tmp_path), **options)
    assert all(math.isfinite(h["loss"]) for h in result.history), result.history
    assert any(not torch.equal(result.encoder.state_dict()[k], before[k]) for k in before)
    saved = load_checkpoint(result.checkpoint_path)
    assert saved["step"] == 3 and saved["config"]["precision"] == options.get("precision", "fp32")
    if options.get("channels_last"):
        assert result.encoder.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    if options.get("precision") == "fp16":
        assert saved["scaler"]["scale"] > 0  # the scaler was on (its state is empty when off)


def test_progress_bar_shows_loss_lr_and_images_per_second(capsys):
    pyclr.train(model(), images(), epochs=2, batch_size=32, head=small_head(), progress=True, lr=0.5,
                warmup_epochs=0, schedule="constant")
    err = capsys.readouterr().err  # tqdm writes to stderr
    assert "epoch 2/2" in err and "img/s" in err
    assert "loss=4.1" in err and "lr=0.5" in err  # NT-Xent starts near log(2N - 1) = log(63) = 4.14
    pyclr.train(model(), images(), epochs=1, batch_size=32, head=small_head(), progress=False)
    assert capsys.readouterr().err == ""


def test_tensorboard_logs_each_epoch(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")  # only when tensorboard is installed
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pyclr.train(model(), images(), epochs=2, batch_size=32, head=small_head(), progress=False,
                out_dir=str(tmp_path))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"loss", "lr", "images_per_s"} <= set(events.Tags()["scalars"])
    logged = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")]
    assert [e.step for e in events.Scalars("loss")] == [3, 6]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx(logged)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("options", [
    {"precision": "bf16"},
    {"precision": "fp16"},
    {"precision": "fp32", "channels_last": True},
    {"precision": "bf16", "loss": "generalized"},
    {"precision": "bf16", "method": "moco"},
    {"precision": "bf16", "compile": True},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_trains_on_cuda(tmp_path, options):
    """A GPU run with each precision and option a GPU user picks: finite losses, weights that
    moved and stayed finite on the GPU, and a checkpoint of every epoch that loads on the CPU.
    (Whether the loss falls in 18 steps is noise here: MoCo's rises as its queue fills.)"""
    encoder = model()
    before = weights(encoder)
    result = pyclr.train(encoder, images(192), epochs=6, batch_size=64, augment=jitter, head=small_head(),
                         device="cuda", progress=False, lr=1.0, warmup_epochs=1, out_dir=str(tmp_path), **options)
    assert all(math.isfinite(h["loss"]) for h in result.history), result.history
    assert all(p.is_cuda and torch.isfinite(p).all() for p in result.encoder.parameters())
    after = weights(result.encoder)
    assert any(not torch.equal(after[k].cpu(), before[k]) for k in before)
    assert len(load_checkpoint(result.checkpoint_path)["history"]) == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda_fp32_run_follows_the_cpu_run():
    """Without augmentation (the only randomness that differs between devices) an fp32 run on
    the GPU takes the CPU run's steps: after 9 steps its weights are the CPU run's up to TF32
    convolutions' rounding, far closer to them than to where both started."""
    def flat(encoder):
        return torch.cat([v.detach().flatten().float().cpu() for v in encoder.state_dict().values()])

    start = flat(model())
    cpu, cuda = (flat(pyclr.train(model(), images(192), epochs=3, batch_size=64, head=small_head(), device=device,
                                  precision="fp32", progress=False, lr=1.0, warmup_epochs=1).encoder)
                 for device in ("cpu", "cuda"))
    moved = (cpu - start).norm()
    assert moved > 0.01 * start.norm()
    assert (cuda - cpu).norm() < 0.05 * moved


def test_generalized_loss_under_torchrun_warns_that_nothing_is_gathered(monkeypatch):
    from pyclr.train import loop

    monkeypatch.setattr(loop.DistributedContext, "from_environment", classmethod(lambda cls: cls(world_size=2)))
    with pytest.warns(UserWarning, match=r"loss='generalized' under torchrun \(2 ranks\): each rank compares"):
        with pytest.raises(ValueError, match="batch_size: expected a multiple of the world size 2"):
            pyclr.train(model(), images(), epochs=1, batch_size=33, loss="generalized", progress=False)


class LearnedTemperature(torch.nn.Module):
    """InfoNCE between the views with a trainable temperature (as CLIP learns its own)."""

    def __init__(self):
        super().__init__()
        self.log_tau = torch.nn.Parameter(torch.tensor(-1.0))

    def forward(self, z1, z2):
        z1, z2 = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
        logits = z1 @ z2.T / self.log_tau.exp()
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(z1)))


def test_a_loss_modules_parameters_are_trained_and_resumed(tmp_path):
    # they were never given to the optimizer (nor saved): a learnable temperature stayed put
    options = dict(epochs=3, batch_size=32, augment=jitter, progress=False, seed=3, lr=0.05, optimizer="adam")
    loss = LearnedTemperature()
    straight = pyclr.train(model(), images(), head=small_head(), loss=loss, **options)
    assert loss.log_tau.item() != -1.0
    assert straight.history[-1]["loss"] < straight.history[0]["loss"]

    def kill_at_step_4(info):
        if info["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pyclr.train(model(), images(), head=small_head(), loss=LearnedTemperature(), out_dir=str(tmp_path),
                    callbacks=[kill_at_step_4], **options)
    resumed_loss = LearnedTemperature()
    resumed = pyclr.train(model(seed=9), images(), head=small_head(9), loss=resumed_loss, out_dir=str(tmp_path),
                          **options)
    assert resumed_loss.log_tau.item() == loss.log_tau.item()
    for name, value in weights(straight.encoder).items():
        assert torch.equal(value, resumed.encoder.state_dict()[name]), name


def test_a_trained_loss_module_is_refused_under_torchrun(monkeypatch):
    from pyclr.train import loop

    monkeypatch.setattr(loop.DistributedContext, "from_environment", classmethod(lambda cls: cls(world_size=2)))
    with pytest.raises(ValueError, match="loss: a loss module with trainable parameters is not supported under torchrun"):
        pyclr.train(model(), images(), epochs=1, batch_size=32, loss=LearnedTemperature(), progress=False)


def test_generalized_loss_and_adam():
    result = pyclr.train(model(), images(), epochs=1, batch_size=32, loss="generalized", optimizer="adam",
                         head=small_head(), progress=False, augment=jitter)
    assert math.isfinite(result.history[-1]["loss"])


def test_moco_queue_fills_in_order():
    moco = MoCo(model(), small_head(), queue_size=10)
    keys = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    moco._enqueue(keys)
    moco._enqueue(keys[:5])
    assert torch.equal(moco.queue[1:6], keys[1:]) and torch.equal(moco.queue[6:10], keys[:4])
    assert torch.equal(moco.queue[0], keys[4]) and int(moco.pointer) == 1


def test_moco_queue_takes_the_heads_width():
    # a head without out_dim got the encoder's feature_dim (16) for its queue: a shape error
    # at the first step
    assert MoCo(model(), torch.nn.Linear(16, 5), queue_size=10).queue.shape == (10, 5)
    assert MoCo(model(), torch.nn.Identity(), queue_size=10).queue.shape == (10, 16)
    with pytest.raises(ValueError, match=r"head: MoCo needs the projection size .*head.out_dim.*Sequential"):
        MoCo(model(), torch.nn.Sequential(torch.nn.Linear(16, 5)), queue_size=10)


@pytest.mark.parametrize("temperature", [0, -1, float("nan"), "0.2"])
def test_moco_checks_its_temperature(temperature):
    # it divided the logits by it unchecked: 0 and NaN gave a NaN loss, -1 a finite wrong one
    with pytest.raises((ValueError, TypeError), match="temperature"):
        MoCo(model(), small_head(), queue_size=10, temperature=temperature)


# --- distributed: 2 gloo processes equal one process on the combined batch ------------------

WORLD = 2


def run_rank(rank, init_file, out_dir, options):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    result = pyclr.train(model(), images(), head=small_head(), **options)
    if rank == 0:
        torch.save({"encoder": result.encoder.state_dict(), "head": result.head.state_dict()},
                   os.path.join(out_dir, "ranked.pt"))
    exit_spawned_rank()  # an exception above ends the process with its traceback instead


def run_rank_logging(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    steps = []  # this rank's own loss at every step
    graded = [(torch.full((1, 12, 12), i / 96) + 0.2 * x, label) for i, (x, label) in enumerate(images())]
    result = pyclr.train(model(), graded, head=small_head(), augment=jitter, epochs=2, batch_size=32, temperature=0.1,
                         progress=False, seed=1, device="cpu", callbacks=[lambda info: steps.append(info["loss"])])
    torch.save({"steps": torch.tensor(steps), "logged": torch.tensor([r["loss"] for r in result.history])},
               os.path.join(out_dir, f"losses{rank}.pt"))
    exit_spawned_rank()


@pytest.mark.distributed
def test_every_rank_logs_the_mean_of_the_ranks_losses():
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(run_rank_logging, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True,
                           start_method="spawn")
        ranks = [torch.load(os.path.join(tmp, f"losses{r}.pt"), weights_only=True) for r in range(WORLD)]
    own = torch.stack([r["steps"].view(2, -1).double().mean(1) for r in ranks])  # (rank, epoch) own means
    atol = 2e-6  # float32 rounding of the means (the losses are near log 63 = 4.14)
    # the ranks saw different views: logging either rank's own loss would miss by half of this
    assert (own[0] - own[1]).abs().min() > 20 * atol
    for r in ranks:
        torch.testing.assert_close(r["logged"].double(), own.mean(0), rtol=0, atol=atol)


@pytest.mark.distributed
def test_two_processes_equal_one_with_the_combined_batch():
    options = dict(epochs=2, batch_size=32, progress=False, seed=1, lr=0.5, device="cpu")  # gloo, fp32
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(run_rank, args=(os.path.join(tmp, "init"), tmp, options), nprocs=WORLD,
                           join=True, start_method="spawn")
        ranked = torch.load(os.path.join(tmp, "ranked.pt"), weights_only=True)
    single = pyclr.train(model(), images(), head=small_head(), **options)
    for part, module in (("encoder", single.encoder), ("head", single.head)):
        for name, value in module.state_dict().items():
            torch.testing.assert_close(ranked[part][name], value, rtol=1e-4, atol=1e-5, msg=f"{part}.{name}")
    assert not torch.equal(model().state_dict()["conv1.0.weight"], single.encoder.state_dict()["conv1.0.weight"])


def run_torchrun_rank(rank, port, out_dir, caller_starts_group):
    """A rank as torchrun starts it: the group is described by the environment."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    if caller_starts_group:
        dist.init_process_group("gloo")
    context = DistributedContext.from_environment()
    end_process_group()
    ended = not dist.is_initialized()
    torch.save({"rank": context.rank, "world_size": context.world_size, "ended": ended},
               os.path.join(out_dir, f"rank{rank}.pt"))
    if not ended:
        exit_spawned_rank()


@pytest.mark.distributed
@pytest.mark.parametrize("caller_starts_group", [False, True])
def test_pyclr_ends_only_the_torchrun_group_it_started(caller_starts_group):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(run_torchrun_rank, args=(port, tmp, caller_starts_group), nprocs=WORLD, join=True,
                           start_method="spawn")
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, WORLD), (1, WORLD)]
    # torch < 2.8 leaves the group to the interpreter (its destroy_process_group can deadlock)
    expect_ended = not caller_starts_group and TORCH_VERSION >= (2, 8)
    assert [r["ended"] for r in ranks] == [expect_ended] * WORLD


def test_a_diverged_run_is_not_saved_as_a_success(tmp_path):
    # lr 1e3 with Adam: the loss stayed finite (collapse at log(2B - 1)) while the head's
    # BatchNorm running variances became inf; the run returned normally and saved them
    torch.manual_seed(0)
    encoder = SmallConvNet(in_channels=1, input_size=12, feature_dim=16, global_pool=True)
    head = ProjectionHead(16, 16, 8, num_layers=2)  # with batch norm

    def diverge(info):  # as lr=1e3 does: a BatchNorm statistic overflows, the loss stays finite
        if info["step"] == 2:
            head.layers[0][1].running_var.fill_(float("inf"))

    with pytest.raises(FloatingPointError, match=r"head: layers.0.1.running_var is not finite after epoch 0 "
                                                  r"\(step 3\); the run diverged"):
        pyclr.train(encoder, images(), head=head, epochs=1, batch_size=32, optimizer="adam", lr=1e-3,
                    progress=False, out_dir=str(tmp_path), callbacks=[diverge])
    assert not (tmp_path / "checkpoint.pt").exists()
    assert (tmp_path / "metrics.jsonl").read_text() == ""  # nor the epoch's record


def test_buffers_infinite_by_design_are_not_taken_for_divergence(tmp_path):
    # a mask buffer of -inf (attention-style) stopped the run as 'diverged' after epoch 0
    encoder = model()
    encoder.register_buffer("mask", torch.full((4, 4), float("-inf")).triu(1))
    result = pyclr.train(encoder, images(), head=small_head(), epochs=1, batch_size=32, progress=False,
                         out_dir=str(tmp_path))
    assert len(result.history) == 1 and (tmp_path / "checkpoint.pt").exists()


def test_starting_over_removes_the_old_checkpoint(tmp_path):
    # resume=False stopped before its first checkpoint left the old run's in place, which the
    # next (resuming) run then took for its own
    options = dict(epochs=1, batch_size=32, progress=False, out_dir=str(tmp_path), head=small_head())
    pyclr.train(model(), images(), **options)
    assert (tmp_path / "checkpoint.pt").exists()

    def stop(info):
        raise RuntimeError("stopped before the first checkpoint")

    with pytest.raises(RuntimeError, match="stopped before the first checkpoint"):
        pyclr.train(model(), images(), **options | {"resume": False, "callbacks": [stop]})
    assert not (tmp_path / "checkpoint.pt").exists()


def test_the_generalized_loss_draws_each_step_from_the_runs_seed(monkeypatch):
    # one seed for every step (the same projections all run long) passed the resume test
    from pyclr.losses import GeneralizedContrastiveLoss
    from pyclr.train import loop

    seeds, forward = [], GeneralizedContrastiveLoss.forward

    def spy(self, z1, z2, *args, generator=None, **kwargs):
        seeds.append(generator.initial_seed())
        return forward(self, z1, z2, *args, generator=generator, **kwargs)

    monkeypatch.setattr(GeneralizedContrastiveLoss, "forward", spy)
    pyclr.train(model(), images(), loss="generalized", head=small_head(), epochs=2, batch_size=32, seed=3,
                progress=False)
    assert seeds == [loop._step_seed(3, step, 0) for step in range(6)] and len(set(seeds)) == 6
