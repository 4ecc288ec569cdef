"""pyclr.render.cli: the ``pyclr masks`` subcommand end to end."""
import argparse

import numpy as np
import pytest

from pyclr.render.cli import add_parser, run

cv2 = pytest.importorskip("cv2")
pytest.importorskip("sklearn")


def parse(argv):
    parser = argparse.ArgumentParser(prog="pyclr")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def write_image(path, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    image[:, :32] = rng.integers(0, 255, 3)
    image[10:30, 30:50] = rng.integers(0, 255, 3)
    assert cv2.imwrite(str(path), image)


def test_masks_on_image_files_with_a_random_encoder(tmp_path, capsys):
    for name in ("a.png", "b.jpg"):
        write_image(tmp_path / name, seed=len(name))
    out = tmp_path / "out"
    args = parse(["masks", "--image", str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "--taps", "block3,block4",
                  "--k", "2,3", "--size", "64", "--out", str(out), "--device", "cpu", "--raw-pixels"])
    assert args.run is run and args.k == [2, 3] and args.taps == ["block3", "block4"]
    assert run(args) == 0
    printed = capsys.readouterr()
    assert "randomly initialised ResNet-50" in printed.err
    files = sorted(p.name for p in out.iterdir())
    assert files == ["a_kmeans.png", "b_kmeans.png"]
    assert printed.out.split() == [str(out / f) for f in files]
    figure = cv2.imread(str(out / "a_kmeans.png"))
    # three rows (block3, block4, raw pixels) and two columns of 64x64 tiles, plus labels
    assert figure.shape[0] > 3 * 64 and figure.shape[1] > 2 * 64 and figure.shape[1] < 3 * 64 + 100


def test_masks_cross_image_ward_on_the_natural_images(tmp_path):
    pytest.importorskip("pyclr.data.real", exc_type=ImportError)
    args = parse(["masks", "--taps", "block4", "--k", "2", "--size", "64", "--method", "ward",
                  "--cross-image", "--out", str(tmp_path), "--device", "cpu"])
    assert run(args) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert "chelsea_ward_cross-image.png" in names and "batch-block4_ward_cross-image.png" in names


def test_masks_bad_input(tmp_path):
    with pytest.raises(SystemExit):
        parse(["masks", "--k", "two"])
    with pytest.raises(ValueError, match="image: cannot read"):
        run(parse(["masks", "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path)]))
    write_image(tmp_path / "a.png")
    with pytest.raises(ValueError, match="method: expected one of"):
        run(parse(["masks", "--image", str(tmp_path / "a.png"), "--method", "dbscan", "--size", "64",
                   "--out", str(tmp_path)]))


@pytest.mark.parametrize("argv", [["--k", "2,,4"], ["--k", "2,4,"], ["--k", "2,2"], ["--k", "2,02"],
                                  ["--k", "1_0"], ["--taps", "block2,block2"], ["--method", "kmeans,,ward"],
                                  ["--method", "kmeans,kmeans"]])
def test_masks_lists_take_no_empty_items_or_repeats(argv, capsys):
    with pytest.raises(SystemExit):
        parse(["masks", *argv])
    assert "expected comma-separated" in capsys.readouterr().err


def test_masks_checks_size_and_out_before_working(tmp_path):
    with pytest.raises(ValueError, match="size: expected at most 4096 pixels a side, got 10000"):
        run(parse(["masks", "--size", "10000", "--out", str(tmp_path / "out")]))
    taken = tmp_path / "file"
    taken.write_text("")
    with pytest.raises(ValueError, match="--out: .* exists and is not a folder"):
        run(parse(["masks", "--size", "64", "--out", str(taken)]))


def test_masks_refuses_what_is_no_image_or_state_dict_by_name(tmp_path):
    import struct
    import zlib

    import torch

    # a PNG header declaring 100000 x 100000 pixels: OpenCV refuses it with its own cv2.error
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    with pytest.raises(ValueError, match="image: cannot read .*bomb.png"):
        run(parse(["masks", "--image", str(bomb), "--out", str(tmp_path / "out")]))
    weights = tmp_path / "intkeys.pt"
    torch.save({1: 2}, weights)
    write_image(tmp_path / "a.png")
    with pytest.raises(ValueError, match="checkpoint: expected a state dict .* got keys of type"):
        run(parse(["masks", "--checkpoint", str(weights), "--image", str(tmp_path / "a.png"),
                   "--out", str(tmp_path / "out")]))


@pytest.mark.parametrize("option, checkpoint, expected", [
    ("auto", False, True), ("auto", True, False), ("imagenet", True, True), ("none", False, False)])
def test_masks_normalize_choice(tmp_path, monkeypatch, capsys, option, checkpoint, expected):
    """auto standardises only the random encoder's inputs: a checkpoint (a pyclr run, or a
    converted SimCLR one in torchvision's layout) saw [0, 1] images, and the choice is said."""
    import torch

    import pyclr.render.masks as masks
    from pyclr.models import resnet18

    seen = {}

    def fake_render_masks(encoder, images, **kwargs):
        seen["normalize"] = kwargs["normalize"]
        return masks.MaskResult(labels={}, colours={})

    monkeypatch.setattr(masks, "render_masks", fake_render_masks)
    write_image(tmp_path / "a.png")
    argv = ["masks", "--image", str(tmp_path / "a.png"), "--size", "32", "--normalize", option,
            "--out", str(tmp_path)]
    if checkpoint:
        torch.save(resnet18().state_dict(), tmp_path / "r18.pth")
        argv += ["--checkpoint", str(tmp_path / "r18.pth")]
    assert run(parse(argv)) == 0
    assert seen["normalize"] is expected
    assert ("not standardised" in capsys.readouterr().err) == (option == "auto" and checkpoint)
