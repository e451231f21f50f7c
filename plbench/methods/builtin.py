"""The field's methods as :class:`~plbench.methods.api.Method` s: thin hosts of the stateful modules of
:mod:`plbench.methods.role`, ``entropy``, ``large_loss``, ``hill_splc`` and ``grloss``.

The math and the per-image state live in those modules (checked there against the authors' code); a
host only maps the hooks: hyper-parameters from ``__init__``, state built in ``setup`` from the run's
training labels, the epoch told at epoch start, pseudo-labels written at epoch end, per-image writes
made through :meth:`~plbench.methods.api.Method.write_rows` so torchrun replicas agree.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor

from plbench.methods.api import BatchInfo, Method, MethodContext, Needs, TrainingSetPass
from plbench.methods.entropy import APL_SETTINGS, EMAPL, APLSettings, EntropyMaximization
from plbench.methods.grloss import GRLoss
from plbench.methods.hill_splc import SPLC, Hill
from plbench.methods.large_loss import LL_DELTA_REL, LargeLossCorrection, LargeLossPermanentCorrection, \
    large_loss_correction_loss
from plbench.methods.role import ROLE, ROLE_EXPECTED_NUM_POS, ROLE_LR_MULT

__all__ = ["RoleMethod", "EMMethod", "EMAPLMethod", "LLCtMethod", "LLCpMethod", "HillMethod", "SPLCMethod",
           "GRLossMethod", "BUILTIN_METHODS"]

_COLE = "Cole et al., Multi-Label Learning from Single Positive Labels, CVPR 2021"
_ZHOU = "Zhou et al., Acknowledging the Unknown for Multi-label Learning with Single Positive Labels, ECCV 2022"
_KIM = "Kim et al., Large Loss Matters in Weakly Supervised Multi-Label Classification, CVPR 2022"
_ZHANG = "Zhang et al., Simple and Robust Loss Design for Multi-Label Learning with Missing Labels, arXiv:2112.07368"
_CHEN = ("Chen et al., Boosting Single Positive Multi-label Classification with Generalized Robust Loss, "
         "IJCAI 2024")


def _expected_num_pos(value: float | None, dataset: str) -> float:
    if value is not None:
        return float(value)
    if dataset in ROLE_EXPECTED_NUM_POS:
        return ROLE_EXPECTED_NUM_POS[dataset]
    raise ValueError(f"expected_num_pos has no default for dataset {dataset!r} (the authors' values: "
                     f"{ROLE_EXPECTED_NUM_POS}); pass it, e.g. --loss-option expected_num_pos=2.9")


class RoleMethod(Method):
    """ROLE: a learnable N x C matrix of label estimates trained with the model, EPR on both."""

    paper, code = _COLE, "github.com/elijahcole/single-positive-multi-label"
    needs = Needs(per_image_state=True)
    label = "ROLE"
    lr_mult = ROLE_LR_MULT

    def __init__(self, expected_num_pos: float | None = None, lr_mult: float = ROLE_LR_MULT) -> None:
        super().__init__()
        self.expected_num_pos, self.lr_mult = expected_num_pos, float(lr_mult)

    @classmethod
    def dataset_defaults(cls) -> dict[str, dict[str, Any]]:
        return {ds: {"expected_num_pos": v} for ds, v in ROLE_EXPECTED_NUM_POS.items()}

    def setup(self, context: MethodContext) -> None:
        self.role = ROLE(context.targets, expected_num_pos=_expected_num_pos(self.expected_num_pos, context.dataset),
                         seed=context.seed).to(context.device)

    def loss(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        return self.role(logits, targets, batch.indices)


def _apl_settings(settings: str | None, dataset: str, given: dict[str, Any], needed: tuple[str, ...],
                  method: str) -> APLSettings:
    """The authors' ``main.py`` settings of dataset ``settings`` (default: the run's ``dataset``), or, for a
    dataset they have none for, COCO's as a carrier of the options that are all given explicitly.

    Raises:
        ValueError: ``settings`` names a dataset without settings; or the run's dataset has none and not
            every option in ``needed`` is given (the message names both fixes).
    """
    if settings is not None:
        if settings not in APL_SETTINGS:
            raise ValueError(f"settings={settings!r} names no dataset of the authors' main.py; expected one of "
                             f"{sorted(APL_SETTINGS)}")
        return APL_SETTINGS[settings]
    if dataset in APL_SETTINGS:
        return APL_SETTINGS[dataset]
    missing = [k for k in needed if k not in given]
    if missing:
        raise ValueError(f"{method} has no settings for dataset {dataset!r} (the authors' main.py has "
                         f"{', '.join(sorted(APL_SETTINGS))}); pass --loss-option settings=coco to train with "
                         f"COCO's, or give {', '.join(missing)} (e.g. --loss-option {missing[0]}=...)")
    return APL_SETTINGS["coco"]  # every field that matters is overridden below


class EMMethod(Method):
    """EM: entropy maximisation on unannotated labels."""

    paper, code = _ZHOU, "github.com/Correr-Zhou/SPML-AckTheUnknown"
    label = "EM"

    def __init__(self, alpha: float | None = None, settings: str | None = None) -> None:
        super().__init__()
        self.alpha, self.settings = alpha, settings

    @classmethod
    def dataset_defaults(cls) -> dict[str, dict[str, Any]]:
        return {ds: {"alpha": s.alpha} for ds, s in APL_SETTINGS.items()}

    def setup(self, context: MethodContext) -> None:
        given = {} if self.alpha is None else {"alpha": self.alpha}
        base = _apl_settings(self.settings, context.dataset, given, ("alpha",), "EM")
        self.em = EntropyMaximization(given.get("alpha", base.alpha))

    def loss(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        return self.em(logits, targets)


class EMAPLMethod(Method):
    """EM + APL: entropy maximisation, and soft negative pseudo-labels written after each epoch from a warm-up on."""

    paper, code = _ZHOU, "github.com/Correr-Zhou/SPML-AckTheUnknown"
    needs = Needs(per_image_state=True, train_pass=True)
    label = "EM+APL"

    def __init__(self, alpha: float | None = None, beta: float | None = None, neg_proportion: float | None = None,
                 warmup_epoch: int | None = None, augment_pass: bool = False, settings: str | None = None) -> None:
        super().__init__()
        self.overrides = {k: v for k, v in dict(alpha=alpha, beta=beta, neg_proportion=neg_proportion,
                                                warmup_epoch=warmup_epoch).items() if v is not None}
        self.augment_pass = bool(augment_pass)  # the authors' pass uses the training transforms
        self.settings = settings

    @classmethod
    def dataset_defaults(cls) -> dict[str, dict[str, Any]]:
        return {ds: {"alpha": s.alpha, "beta": s.beta, "neg_proportion": s.neg_proportion,
                     "warmup_epoch": s.warmup_epoch} for ds, s in APL_SETTINGS.items()}

    def setup(self, context: MethodContext) -> None:
        base = _apl_settings(self.settings, context.dataset, self.overrides,
                             ("alpha", "beta", "neg_proportion", "warmup_epoch"), "EM + APL")
        settings = replace(base, num_epochs=context.epochs, **self.overrides)
        self.targets = context.targets
        self.apl = EMAPL(context.targets, settings).to(context.device)

    def loss(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        return self.apl(logits, targets, batch.indices)

    def on_epoch_end(self, epoch: int, train_set: TrainingSetPass | None) -> None:
        if train_set is not None and self.apl.due(epoch):
            self.apl.pseudo_label(train_set.probabilities(augment=self.augment_pass), self.targets)


class _EpochLossHost(Method):
    """A host of one loss module that is told the epoch: :meth:`loss` calls it on (logits, targets),
    :meth:`on_epoch_start` calls its ``set_epoch``. ``module_name`` names the attribute that holds it (one per
    method, so the keys of existing checkpoints stay as they were)."""

    module_name: str

    def loss(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        return getattr(self, self.module_name)(logits, targets)

    def on_epoch_start(self, epoch: int) -> None:
        getattr(self, self.module_name).set_epoch(epoch)


class LLCtMethod(_EpochLossHost):
    """LL-Ct: assume negative, the largest unannotated losses corrected to positive for the step."""

    paper, code = _KIM, "github.com/snucml/LargeLossMatters"
    label = "LL-Ct"
    module_name = "ll"

    def __init__(self, delta_rel: float = LL_DELTA_REL["ll_ct"]) -> None:
        super().__init__()
        self.ll = LargeLossCorrection(delta_rel)


class LLCpMethod(Method):
    """LL-Cp: as LL-Ct, with the corrections written back permanently (per-image state)."""

    paper, code = _KIM, "github.com/youngwk/BridgeGapExplanationPAMC"
    needs = Needs(per_image_state=True)
    label = "LL-Cp"

    def __init__(self, delta_rel: float = LL_DELTA_REL["ll_cp"]) -> None:
        super().__init__()
        self.delta_rel = float(delta_rel)

    def setup(self, context: MethodContext) -> None:
        self.ll = LargeLossPermanentCorrection(context.num_images, context.num_classes,
                                               self.delta_rel).to(context.device)

    def on_epoch_start(self, epoch: int) -> None:
        self.ll.set_epoch(epoch)

    def loss(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        # LargeLossPermanentCorrection.forward, with the write-back gathered across torchrun processes
        targets = self.ll.effective_targets(targets, batch.indices)
        rate = self.ll.delta_rel if self.ll.epoch >= 1 else 0.0
        loss, corrected = large_loss_correction_loss(logits, targets, rate=rate)
        rows = batch.indices.to(self.ll.corrected.device)
        self.write_rows(self.ll.corrected, rows, self.ll.corrected[rows] | corrected.to(self.ll.corrected.device))
        return loss


class HillMethod(Method):
    """Hill: focal-margin positives, a hill-shaped cost on (possibly missing) negatives."""

    paper, code = _ZHANG, "github.com/xinyu1205/robust-loss-mlml"
    reduction = "sum"
    label = "Hill"

    def __init__(self, lamb: float = 1.5, margin: float = 1.0, gamma: float = 2.0) -> None:
        super().__init__()
        self.hill = Hill(lamb, margin, gamma)

    def loss(self, logits: Tensor, targets: Tensor, batch: BatchInfo) -> Tensor:
        return self.hill(logits, targets)


class SPLCMethod(_EpochLossHost):
    """SPLC: focal-margin BCE; confident unannotated labels count as positives from an epoch on."""

    paper, code = _ZHANG, "github.com/xinyu1205/robust-loss-mlml"
    reduction = "sum"
    label = "SPLC"
    module_name = "splc"

    def __init__(self, tau: float = 0.6, change_epoch: int = 1, margin: float = 1.0, gamma: float = 2.0) -> None:
        super().__init__()
        self.splc = SPLC(tau, change_epoch, margin, gamma)


class GRLossMethod(_EpochLossHost):
    """GR-Loss: epoch-scheduled soft pseudo-labels and confidence reweighting of unannotated labels."""

    paper, code = _CHEN, "github.com/yan4xi1/GRLoss"
    label = "GR-Loss"
    module_name = "gr"

    def __init__(self, num_epochs: int | None = None, beta: tuple[float, float, float, float] = (0.0, 2.0, -2.0, -2.0),
                 alpha: tuple[float, float, float, float] = (0.5, 2.0, 0.8, 0.5), q2: float = 0.01, q3: float = 1.0,
                 linear_init_epochs: int = 0) -> None:
        super().__init__()
        self.kw: dict[str, Any] = dict(beta=tuple(beta), alpha=tuple(alpha), q2=q2, q3=q3,
                                       linear_init_epochs=linear_init_epochs)
        self.num_epochs = num_epochs  # None: the run's epochs

    def setup(self, context: MethodContext) -> None:
        self.gr = GRLoss(self.num_epochs if self.num_epochs is not None else context.epochs, **self.kw)


#: registry name -> class, added to plbench.methods.registry.METHODS
BUILTIN_METHODS: dict[str, type[Method]] = {
    "role": RoleMethod, "em": EMMethod, "em_apl": EMAPLMethod, "ll_ct": LLCtMethod, "ll_cp": LLCpMethod,
    "hill": HillMethod, "splc": SPLCMethod, "gr_loss": GRLossMethod,
}
