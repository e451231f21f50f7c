"""Partial-label losses: CSL's P-ASL with its modes, ASL, BCE and the single-positive losses.

Targets are (B, C) with ``1`` positive, ``0`` annotated negative, ``-1`` unannotated. The math lives in
:mod:`plbench.losses.functional`; :mod:`plbench.losses.modules` holds thin ``nn.Module`` wrappers, and
:func:`create_loss` builds one by name. What the rest of plbench must know about a loss lives on its class
(:class:`PartialLoss`: default mode, reduction, report label and column order); :func:`resolve_mode` is
the one answer to "does this loss take a mode, and which".
"""

from plbench.losses.functional import (
    Mode,
    WEIGHT_RULES,
    assume_negative_loss,
    asymmetric_loss,
    binary_cross_entropy,
    expected_positive_regularized_loss,
    large_loss_rejection_loss,
    partial_asymmetric_loss,
    smallest_k_mask,
    weight_rule,
)
from plbench.losses.modules import (
    AssumeNegativeLoss,
    AsymmetricLoss,
    BCELoss,
    ExpectedPositiveRegularizedLoss,
    LabelSmoothedAssumeNegativeLoss,
    LargeLossRejectionLoss,
    ModalLoss,
    PartialAsymmetricLoss,
    PartialLoss,
    WeightedAssumeNegativeLoss,
    hyper_parameters,
)
from plbench.losses.registry import (
    LOSSES,
    create_loss,
    list_losses,
    loss_class,
    register_loss,
    resolve_mode,
    takes_mode,
)

__all__ = [
    "Mode", "WEIGHT_RULES", "weight_rule", "smallest_k_mask",
    "partial_asymmetric_loss", "asymmetric_loss", "binary_cross_entropy", "assume_negative_loss",
    "expected_positive_regularized_loss", "large_loss_rejection_loss",
    "PartialLoss", "ModalLoss", "hyper_parameters", "PartialAsymmetricLoss", "AsymmetricLoss", "BCELoss", "AssumeNegativeLoss",
    "LabelSmoothedAssumeNegativeLoss", "WeightedAssumeNegativeLoss", "ExpectedPositiveRegularizedLoss",
    "LargeLossRejectionLoss", "LOSSES", "create_loss", "list_losses", "loss_class", "register_loss", "resolve_mode",
    "takes_mode",
]
