"""The field's single-positive and partial-label methods, as pure functions plus small stateful modules.

One module per method family; each docstring names the paper, the authors' repository and files it was
checked against, and where it follows their code rather than the paper:

* :mod:`~plbench.methods.role`: ROLE (Cole et al. 2021), a per-image label-estimate parameter.
* :mod:`~plbench.methods.entropy`: EM and EM + APL (Zhou et al. 2022), epoch-end pseudo-labels.
* :mod:`~plbench.methods.large_loss`: LL-Ct and LL-Cp (Kim et al. 2022; LL-R is in plbench.losses).
* :mod:`~plbench.methods.hill_splc`: Hill and SPLC (Zhang et al.).
* :mod:`~plbench.methods.grloss`: GR-Loss (Chen et al. 2024), epoch-scheduled soft pseudo-labels.

Per-image state is held in (N, C) tensors indexed by dataset index (buffers or parameters, so
``state_dict`` / ``load_state_dict`` carry it). Nothing here reads files or knows the training loop. The BoostLU head
(Kim et al. 2023) is a head: :mod:`plbench.heads.boostlu`.
"""

from plbench.methods.entropy import APL_SETTINGS, EMAPL, EntropyMaximization, asymmetric_pseudo_labels, \
    entropy_maximization_loss
from plbench.methods.grloss import GRLoss, gr_loss, gr_schedule
from plbench.methods.hill_splc import SPLC, Hill, hill_loss, splc_loss
from plbench.methods.large_loss import LargeLossCorrection, LargeLossPermanentCorrection, large_loss_correction_loss
from plbench.methods.role import ROLE, LabelEstimator, role_loss

__all__ = [
    "ROLE", "LabelEstimator", "role_loss",
    "EMAPL", "EntropyMaximization", "APL_SETTINGS", "entropy_maximization_loss", "asymmetric_pseudo_labels",
    "LargeLossCorrection", "LargeLossPermanentCorrection", "large_loss_correction_loss",
    "Hill", "SPLC", "hill_loss", "splc_loss",
    "GRLoss", "gr_loss", "gr_schedule",
]
