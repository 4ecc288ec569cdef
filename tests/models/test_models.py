"""Encoders (taps, shapes, torchvision checkpoints) and the projection head."""
import pytest
import torch

from pyclr.models import LeNet, ProjectionHead, ResNet, SmallConvNet, make_encoder


def batch(c, size, b=2, seed=0):
    return torch.randn(b, c, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch,width,dim", [("resnet18", 1, 512), ("resnet34", 1, 512), ("resnet18", 2, 1024),
                                            ("resnet50", 1, 2048), ("resnet50", 2, 4096)])
def test_resnet_shapes_imagenet_stem(arch, width, dim):
    model = ResNet(arch, width=width).eval()
    x = batch(3, 64)
    feats = model.features(x, ("stem", "block1", "block2", "block3", "block4"))
    expansion = 4 if arch == "resnet50" else 1
    assert feats["stem"].shape == (2, 64 * width, 16, 16)
    for i, name in enumerate(("block1", "block2", "block3", "block4")):
        side = 16 // 2**i
        assert feats[name].shape == (2, 64 * width * 2**i * expansion, side, side)
    out = model(x)
    assert model.feature_dim == dim and out.shape == (2, dim)
    # the representation is the average of the last tap
    assert torch.allclose(out, feats["block4"].mean((2, 3)), atol=1e-6)


def test_resnet_cifar_stem_and_channels():
    model = ResNet("resnet18", cifar_stem=True, in_channels=5).eval()
    feats = model.features(batch(5, 32), ("block1", "block4"))
    assert list(feats) == ["block1", "block4"]
    assert feats["block1"].shape == (2, 64, 32, 32) and feats["block4"].shape == (2, 512, 4, 4)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)


def test_features_single_tap_and_order():
    model = ResNet("resnet18", cifar_stem=True).eval()
    x = batch(3, 32)
    only = model.features(x, "block2")
    both = model.features(x, ("block3", "block2"))
    assert list(both) == ["block3", "block2"]
    assert torch.equal(only["block2"], both["block2"])


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_loads_torchvision_weights(arch):
    tv = pytest.importorskip("torchvision")
    reference = getattr(tv.models, arch)().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so a mix-up would show
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    model = ResNet(arch).eval()
    classifier = model.load_torchvision_state_dict({"state_dict": {"module." + k: v for k, v in reference.state_dict().items()}})
    assert set(classifier) == {"fc.weight", "fc.bias"}
    x = batch(3, 64)
    with torch.no_grad():
        expected = torch.flatten(reference.avgpool(reference.layer4(reference.layer3(reference.layer2(
            reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))), 1)
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(reference.fc(model(x)), reference(x), atol=1e-4)


def test_state_dict_round_trip_wide():
    a, b = ResNet("resnet50", width=2).eval(), ResNet("resnet50", width=2).eval()
    b.load_torchvision_state_dict(a.state_dict())
    x = batch(3, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_wrong_checkpoint_names_the_keys():
    with pytest.raises(ValueError, match=r"missing keys: .*layer1\.0\.conv3\.weight"):
        ResNet("resnet50").load_torchvision_state_dict(ResNet("resnet18").state_dict())
    with pytest.raises(ValueError, match=r"unexpected keys: .*layer1\.0\.bn3\.bias"):
        ResNet("resnet18").load_torchvision_state_dict(ResNet("resnet50").state_dict())
    with pytest.raises(ValueError, match=r"shape mismatch in \d+ tensors, e\.g\. bn1\.bias: expected \(128,\), got \(64,\)"):
        ResNet("resnet50", width=2).load_torchvision_state_dict(ResNet("resnet50").state_dict())
    with pytest.raises(TypeError, match="state_dict: expected a mapping"):
        ResNet("resnet18").load_torchvision_state_dict([1, 2])


def test_lenet_and_small_convnet():
    lenet = LeNet(in_channels=4)
    assert lenet(batch(4, 28)).shape == (2, 5184) == (2, lenet.feature_dim)
    assert lenet.features(batch(4, 28), "conv1")["conv1"].shape == (2, 6, 23, 23)
    small = SmallConvNet(in_channels=1 + 10)
    assert small(batch(11, 28)).shape == (2, 128)
    feats = small.features(batch(11, 28), ("conv1", "conv2", "conv3"))
    assert [f.shape[1:] for f in feats.values()] == [(32, 14, 14), (64, 7, 7), (64, 4, 4)]
    with pytest.raises(ValueError, match="x: this encoder was built for 28x28 inputs"):
        small(batch(11, 40))  # 5x5 last map; 32x32 inputs would end 4x4 like 28x28 ones
    # as many values in another layout: read scrambled by the dense part (LeNet 37x22 -> 27x12 = 18x18)
    with pytest.raises(ValueError, match=r"x: this encoder was built for 28x28 inputs \(input_size=28\); its "
                                         r"last map is \(16, 27, 12\), not \(16, 18, 18\)"):
        lenet(torch.rand(2, 4, 37, 22))
    with pytest.raises(ValueError, match=r"its last map is \(64, 32, 1\), not \(64, 4, 4\)"):
        small(torch.rand(2, 11, 250, 5))


def test_small_convnet_global_pool_ignores_where_the_pattern_is():
    torch.manual_seed(0)
    pooled = SmallConvNet(in_channels=1, input_size=56, global_pool=True)
    assert pooled.dense[0].in_features == 64 and pooled(batch(1, 40)).shape == (2, 128)  # any size
    image = torch.zeros(1, 1, 56, 56)
    image[..., 8:22, 8:22] = torch.rand(14, 14)
    moved = torch.roll(image, shifts=(24, 16), dims=(2, 3))  # a multiple of the total stride 8
    assert torch.allclose(pooled(image), pooled(moved), atol=1e-5)
    flat = SmallConvNet(in_channels=1, input_size=56)
    assert not torch.allclose(flat(image), flat(moved), atol=1e-3)
    with pytest.raises(TypeError, match="global_pool: expected a bool"):
        SmallConvNet(global_pool=1)


def test_make_encoder_and_bad_input():
    assert isinstance(make_encoder("resnet18", cifar_stem=True), ResNet)
    with pytest.raises(ValueError, match="encoder: expected one of 'resnet18'"):
        make_encoder("vit")
    with pytest.raises(ValueError, match=r"encoder 'resnet50': unknown options \['widht'\]; it takes width, cifar_stem"):
        make_encoder("resnet50", widht=2)
    with pytest.raises(ValueError, match=r"encoder 'lenet': unknown options \['arch'\]; it takes in_channels"):
        make_encoder("lenet", arch="resnet18")
    with pytest.raises(ValueError, match="width: expected one of"):
        ResNet("resnet18", width=3)
    with pytest.raises(ValueError, match="arch: expected one of"):
        ResNet("resnet101")
    model = ResNet("resnet18", cifar_stem=True)
    with pytest.raises(ValueError, match="taps: expected names among stem, block1"):
        model.features(batch(3, 32), ("block5",))
    with pytest.raises(ValueError, match=r"x: expected a batch of shape \(B, 3, H, W\)"):
        model(batch(1, 32))
    with pytest.raises(TypeError, match=r"x: expected a floating-point batch \(uint8 images: x.float\(\) / 255\), "
                                        "got torch.uint8"):  # was conv2d's 'Input type (unsigned char) ...'
        model((batch(3, 32) * 255).to(torch.uint8))


def test_small_encoders_take_empty_batches_and_name_too_small_images():
    assert LeNet(in_channels=1)(torch.rand(0, 1, 28, 28)).shape == (0, 5184)  # was an IndexError
    assert SmallConvNet()(torch.rand(0, 1, 28, 28)).shape == (0, 128)
    with pytest.raises(ValueError, match="x: expected images of at least 11x11 pixels, got 5x5"):
        LeNet(in_channels=1)(torch.rand(2, 1, 5, 5))  # was max_pool2d's 'Output size is too small'
    # 10x10 was the stated minimum, but its last map is 0x0: feature_dim 0, then max_pool2d's error
    with pytest.raises(ValueError, match="input_size: expected an int >= 11, got 10"):
        LeNet(in_channels=1, input_size=10)
    with pytest.raises(ValueError, match="x: expected images of at least 11x11 pixels, got 10x10"):
        LeNet(in_channels=1).features(torch.rand(2, 1, 10, 10), "conv2")
    smallest = LeNet(in_channels=1, input_size=11)
    assert smallest.feature_dim == 16 and smallest(torch.rand(2, 1, 11, 11)).shape == (2, 16)


def test_projection_head_return_all_must_be_a_bool():
    with pytest.raises(TypeError, match="return_all: expected a bool, got 'no'"):
        ProjectionHead(4, 8, 2)(torch.randn(3, 4), return_all="no")  # "no" returned the list


@pytest.mark.parametrize("num_layers", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_projection_head_layers(num_layers, batch_norm):
    head = ProjectionHead(32, 64, 16, num_layers=num_layers, batch_norm=batch_norm)
    h = torch.randn(8, 32)
    outs = head(h, return_all=True)
    assert len(outs) == num_layers + 1 and outs[0] is h
    assert torch.equal(outs[-1], head(h))
    assert [o.shape[1] for o in outs] == [32] + [64] * max(num_layers - 1, 0) + ([16] if num_layers else [])
    for o in outs[1:-1]:
        assert (o >= 0).all()  # hidden layers end with ReLU
    if num_layers:
        assert (outs[-1] < 0).any()  # the output layer has none
    assert head.out_dim == (16 if num_layers else 32)


@pytest.mark.parametrize("batch_norm,output_bias,biases", [
    (False, True, [True, True, True]), (False, False, [True, True, False]),
    (True, True, [False, False, False]), (True, False, [False, False, False])])
def test_projection_head_biases(batch_norm, output_bias, biases):
    """Without batch norm every linear layer has a bias unless output_bias=False drops the
    last one (Hermann et al.'s sprites head); with batch norm none has one."""
    head = ProjectionHead(32, 64, 16, num_layers=3, batch_norm=batch_norm, output_bias=output_bias)
    assert [layer[0].bias is not None for layer in head.layers] == biases
    with pytest.raises(TypeError, match="output_bias: expected a bool"):
        ProjectionHead(32, 64, 16, output_bias=0)


def test_projection_head_per_layer_sizes_and_errors():
    head = ProjectionHead(5184, (120, 84), 84, num_layers=3)
    assert [o.shape[1] for o in head(torch.randn(4, 5184), return_all=True)] == [5184, 120, 84, 84]
    with pytest.raises(ValueError, match="hidden_dim: expected an int or 2 sizes"):
        ProjectionHead(10, (5,), 3, num_layers=3)
    with pytest.raises(ValueError, match="num_layers: expected an int in 0..4"):
        ProjectionHead(10, 5, 3, num_layers=5)
    with pytest.raises(ValueError, match=r"h: expected shape \(B, 10\)"):
        ProjectionHead(10, 5, 3)(torch.randn(4, 11))


def test_features_without_taps_reads_the_default_taps():
    """ResNets: the four block groups (the maps the papers cluster); other encoders: every
    stage, so that features(x) works for any encoder."""
    resnet = ResNet("resnet18").eval()
    assert list(resnet.features(batch(3, 32))) == ["block1", "block2", "block3", "block4"]
    for model in (SmallConvNet(in_channels=3, input_size=28), LeNet(in_channels=3, input_size=28)):
        feats = model.features(batch(3, 28))
        assert tuple(feats) == model.taps == model.default_taps
        assert all(torch.isfinite(f).all() for f in feats.values())


def test_a_state_dict_of_other_values_is_named():
    model = ResNet("resnet18")
    state = model.state_dict()
    # a list crashed inside the mismatch message ('list' object has no attribute 'shape');
    # a numpy array reached load_state_dict's own error
    for value in ([1, 2], state["conv1.weight"].numpy()):
        with pytest.raises(TypeError, match=r"state_dict: expected tensors, got (list|ndarray) at conv1\.weight"):
            model.load_torchvision_state_dict({**state, "conv1.weight": value})
    with pytest.raises(TypeError, match="strict: expected a bool, got 'no'"):
        model.load_torchvision_state_dict(state, strict="no")  # was taken as true


@pytest.mark.parametrize("call,error,message", [
    (lambda: ResNet(["resnet18"]), ValueError, "arch: expected one of"),  # unhashable type: 'list'
    (lambda: make_encoder(["resnet18"]), ValueError, "encoder: expected one of"),
    (lambda: ResNet("resnet18").features(torch.rand(1, 3, 32, 32), 5), TypeError,
     "taps: expected a tap name or a list of them, got int"),  # 'int' object is not iterable
    (lambda: ResNet("resnet18").features(torch.rand(1, 3, 32, 32), b"stem"), TypeError,
     "taps: expected a tap name or a list of them, got bytes"),  # taken apart into ints
])
def test_encoder_arguments_of_the_wrong_kind_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_head_sizes_may_be_a_numpy_array():
    import numpy as np

    head = ProjectionHead(8, np.array([6, 5]), 4, num_layers=3)  # 'expected ... 2 sizes, got ndarray'
    assert [layer.shape[1] for layer in head(torch.randn(3, 8), return_all=True)] == [8, 6, 5, 4]
