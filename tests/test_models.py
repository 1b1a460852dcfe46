"""Model registry: every architecture builds, runs at small and full input size, has the known size."""

from __future__ import annotations

import pytest
import torch

from edgecnn.errors import EdgeCNNError
from edgecnn.models import MODELS, build_model, count_macs, count_params, input_size_for

# Parameter counts with a 10-class head, from the architectures' definitions (the torchvision
# numbers are its published ImageNet counts minus the 1000-class head plus a 10-class one).
KNOWN_PARAMS = {
    "lenet5": 61_706,
    "simplecnn": 1_147_466,  # 3 input channels
    "mobilenet_v2": 3_504_872 - 1_281_000 + 12_810,
    "mobilenet_v3_small": 2_542_856 - 1_025_000 + 10_250,
    "resnet18": 11_689_512 - 513_000 + 5_130,
    # 1-D CNNs (1xk kernels), conv weights + BN + head: cnn1d 6x32x7 + 32x64x5 + 64x64x3 + BN 2x(32+64+64) + 64x10+10;
    # dscnn 10x64x5 + 4x(64x3 + 64x64) + BN 9x2x64 + 64x10+10
    "cnn1d": 1_344 + 10_240 + 12_288 + 320 + 650,  # 6 input channels
    "dscnn": 3_200 + 4 * (192 + 4_096) + 1_152 + 650,  # 10 input channels
}
SERIES = ("cnn1d", "dscnn")


def _channels(name: str) -> int:
    return {"lenet5": 1, "cnn1d": 6, "dscnn": 10}.get(name, 3)


def test_registry_lists_every_architecture():
    assert set(MODELS) == set(KNOWN_PARAMS)


@pytest.mark.parametrize("name", sorted(KNOWN_PARAMS))
def test_param_counts_match_the_architecture(name):
    assert count_params(build_model(name, 10, _channels(name))) == KNOWN_PARAMS[name]


@pytest.mark.parametrize("name", SERIES)
def test_series_models_take_any_window_length(name):
    """[N, C, 1, T] in, logits out, for short (JapaneseVowels-like) and long windows; 1 x k kernels only."""
    model = build_model(name, 5, _channels(name)).eval()
    with torch.no_grad():
        for t in (8, 26, 100, 1000):
            assert model(torch.randn(2, _channels(name), 1, t)).shape == (2, 5)
    assert all(m.kernel_size[0] == 1 for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert MODELS[name].kind == "series"


@pytest.mark.parametrize("name", sorted(set(MODELS) - set(SERIES)))
def test_forward_small_input_and_full_size(name):
    torch.manual_seed(0)
    c = _channels(name)
    small = {"small_input": True} if "small_input" in MODELS[name].options else {}
    model = build_model(name, 7, c, **small).eval()
    with torch.no_grad():
        y = model(torch.randn(2, c, 32, 32))
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    size = input_size_for(name)
    full = build_model(name, 7, c).eval()
    with torch.no_grad():
        y = full(torch.randn(1, c, size, size))
    assert y.shape == (1, 7)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "resnet18"])
def test_small_input_variant_keeps_spatial_detail(name):
    """At 32 px the small-input variant has total stride 8 (4x4 final map), the 224-px one 32 (1x1)."""
    def final_map(model):
        seen = {}
        last = model.features if hasattr(model, "features") else model.layer4
        last.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))  # returns None: output kept
        with torch.no_grad():
            model.eval()(torch.randn(1, 3, 32, 32))
        return seen["shape"][-1]

    assert final_map(build_model(name, 10, 3, small_input=True)) == 4
    assert final_map(build_model(name, 10, 3)) == 1


@pytest.mark.parametrize("name", ["simplecnn", "mobilenet_v2", "mobilenet_v3_small", "resnet18"])
def test_greyscale_input(name):
    model = build_model(name, 10, 1, **({"small_input": True} if name != "simplecnn" else {})).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 10)


def test_width_mult_shrinks_mobilenets():
    for name in ("mobilenet_v2", "mobilenet_v3_small"):
        assert count_params(build_model(name, 10, 3, width_mult=0.5)) < 0.6 * KNOWN_PARAMS[name]


def test_lenet5_macs_are_the_textbook_count():
    # conv1 28*28*6*25 + conv2 10*10*16*150 + fc 400*120 + 120*84 + 84*10
    assert count_macs(build_model("lenet5", 10, 1), (1, 32, 32)) == 416_520


def test_mobilenet_v2_macs_match_the_paper():
    macs = count_macs(build_model("mobilenet_v2", 1000, 3), (3, 224, 224))
    assert 295e6 < macs < 305e6  # the MobileNetV2 paper: 300M multiply-adds at 224 px


def test_models_export_with_torch_export():
    """The export area traces models with torch.export: every block must be traceable."""
    for name in ("lenet5", "simplecnn"):
        model = build_model(name, 10, _channels(name)).eval()
        x = torch.randn(1, _channels(name), 32, 32)
        ep = torch.export.export(model, (x,))
        assert torch.allclose(ep.module()(x), model(x), atol=1e-5)


def test_bad_model_requests():
    with pytest.raises(EdgeCNNError, match="unknown model 'vgg'"):
        build_model("vgg", 10, 3)
    with pytest.raises(EdgeCNNError, match="does not take option"):
        build_model("lenet5", 10, 1, width_mult=0.5)
    with pytest.raises(EdgeCNNError, match="width-mult"):
        build_model("resnet18", 10, 3, width_mult=0.5)


def test_maxvit_is_built_for_its_input_side_and_refuses_one_its_partitions_cannot_take(capsys):
    """MaxViT's 7x7 partitions need a side that is a multiple of 224: it is built for the side asked for
    (like ViT's patch grid), its minimum is 224, and another side is one line, not a shape error mid-run."""
    from edgecnn.cli import main
    from edgecnn.models import get_spec

    assert get_spec("maxvit_t").min_input_size == 224 and "image_size" in get_spec("maxvit_t").options
    with pytest.raises(EdgeCNNError, match="maxvit_t cannot be built for 480 px \\(it needs a multiple of 224 px\\): .*not divisible by partition size 7"):
        build_model("maxvit_t", 3, 3, image_size=448 + 32)
    assert main(["train", "maxvit_t", "--img-size", "64", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgecnn: error:") and "224" in err and "\n" not in err, err
