"""CLIP-Decoder's image-text alignment term in a zero-shot ML-Decoder run (``--alignment-weight``).

With ``config.alignment_weight`` W > 0 the training loss of each step is ``classification_weight *
classification loss + W * alignment loss`` (CLIP-Decoder's ``train_zsl_nus.py``, both weights 1 there). The
alignment loss is :class:`plbench.losses.alignment.ImageTextAlignment` between

* the image: the ML-Decoder's spatial memory tokens (B, L, E) of this step's forward, read by a forward hook
  on the head's input projection (``relu(embed(tokens))``, what the queries attend to), averaged over L;
* the text: the caption of the image's positive *seen* labels ("a photo of sky, clouds and water",
  :func:`plbench.losses.alignment.caption_from_labels`; ``_`` in names read as spaces), embedded once per
  distinct caption with the run's ``class_embeddings`` encoder (no prompt template: the caption is the text).

Unseen names never enter a caption (the authors' captions list every label of ``data.csv``, unseen ones
included: a leak of the protocol). The projections and the logit scale are drawn from a generator seeded by
the run's seed (the same on resume; the global random stream left alone) and are frozen by default, as in the
published runs (see :mod:`plbench.losses.alignment`: the authors' code moves them with ``.to(device)``, which
on a GPU unregisters them, so their optimizer never saw them). ``config.alignment_trainable`` makes them
learnable, as the paper describes: an extra parameter group of the run's Adam (the run's learning rate and
schedule, no weight decay), saved in the checkpoints (``extra["alignment"]``). Under torchrun each process
computes the global batch's loss, so these parameters get the same gradient on every process; it is averaged
over the processes all the same (they are outside DDP), so rounding cannot make the replicas drift apart.
The text encoder stays fixed either way (the authors' optimizer also trains their CLIP model).
W = 0 and a classification weight of 1 (the defaults) add nothing to the step: the run is the run without this
module, bit for bit.

Under torchrun the term is the loss of the global batch (see :class:`AlignmentTerm`), not of each share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from plbench.embeddings import DEFAULT_CLIP_MODEL, class_embeddings, is_encoder
from plbench.errors import InputError
from plbench.labels import POS, PartialLabels

ALIGNMENT_PROJ_DIM = 512  # the authors' shared space


def is_active(config: Any) -> bool:
    """Whether the run's loss differs from the classification loss alone."""
    return config.alignment_weight != 0 or config.classification_weight != 1


def check_config(config: Any) -> None:
    """Refuse alignment settings a run cannot use (called before anything is written).

    Raises:
        InputError: alignment or a classification weight other than 1 without a zero-shot split; alignment with
            an embedding file (a fixed table cannot embed captions); ``alignment_trainable`` without alignment.
    """
    if config.alignment_trainable and not config.alignment_weight:
        raise InputError(None, "--alignment-trainable", "learnable alignment projections and temperature need the "
                         "alignment loss, but --alignment-weight is 0", "add --alignment-weight W > 0, or leave out "
                         "--alignment-trainable")
    if not is_active(config):
        return
    if config.zsl_split is None:
        raise InputError(None, "--alignment-weight", "the alignment loss and loss weights are for zero-shot "
                         "ML-Decoder runs, but no --zsl-split was given",
                         "add --zsl-split and --class-embeddings, or leave out --alignment-weight / --classification-weight")
    source = config.class_embeddings or ""
    if config.alignment_weight and not is_encoder(source):
        raise InputError(source, "--alignment-weight", "the alignment loss embeds each image's caption with the "
                         f"run's text encoder, but --class-embeddings {source!r} is a fixed embedding file, which "
                         "holds class names only", "use an encoder (glove, minilm, clip:FILE), or --alignment-weight 0")


def image_captions(labels: PartialLabels, class_names: list[str]) -> list[str]:
    """The caption of every image (row) of ``labels``: its positive classes in column order."""
    from plbench.losses.alignment import caption_from_labels

    words = [n.replace("_", " ") for n in class_names]
    out = []
    for start in range(0, labels.num_images, 4096):  # dense blocks, never the whole (N, C) matrix at once
        block = labels.batch(np.arange(start, min(start + 4096, labels.num_images)))
        out.extend(caption_from_labels([words[j] for j in np.flatnonzero(row == POS)]) for row in block)
    return out


class CaptionTable:
    """Embedded captions of the training images: ``vectors`` float32 (U, D) of the U distinct captions,
    ``index`` int64 (M,): training image k (the training set's position) has caption ``index[k]``.
    ``cache_dir``: the run's cache of encoder results (:func:`plbench.engine.zero_shot.embedding_cache`);
    ``clip_model``: the open_clip architecture of a ``clip:`` source."""

    def __init__(self, captions: list[str], source: str, device: torch.device, cache_dir: Path | None = None,
                 clip_model: str = DEFAULT_CLIP_MODEL) -> None:
        distinct = list(dict.fromkeys(captions))
        where = {c: i for i, c in enumerate(distinct)}
        # a caption of unknown GloVe words has no vector: a zero row, which the loss normalises to zero
        emb = class_embeddings(distinct, source, allow_missing=True, device=str(device), cache_dir=cache_dir,
                               clip_model=clip_model)
        self.captions = distinct
        self.vectors = torch.from_numpy(emb.vectors).to(device)
        self.index = torch.tensor([where[c] for c in captions], dtype=torch.int64)

    def __call__(self, positions: Tensor) -> Tensor:
        """(B, D) caption embeddings of the training images at ``positions`` (B,)."""
        return self.vectors[self.index[positions.cpu()].to(self.vectors.device)]


class AlignmentTerm:
    """The weighted loss of one step: ``classification_weight * classification + alignment_weight * alignment``.

    Under torchrun the alignment is CLIP-Decoder's loss of the *global* batch, as in one process: every
    process gathers the pooled memory tokens (with gradients) and the dataset indices of all processes'
    images (:func:`plbench.methods.sync.gather_batch`; shares of unequal size, and empty ones, included),
    computes the same loss and backpropagates it at weight ``alignment_weight / loss_scale``, so that after
    the trainer's ``loss_scale`` and DDP's gradient averaging the update is the single-process one.

    Args:
        head: the zero-shot ML-Decoder (its ``embed`` projection is hooked).
        captions: the training images' embedded captions.
        alignment_weight, classification_weight: the loss weights.
        seed: seeds the random projections.
        loss_scale: the trainer's factor on the whole loss (the world size for summed losses, else 1).
        trainable: whether the projections and the logit scale get gradients (the caller optimises them).
    """

    def __init__(self, head: nn.Module, captions: CaptionTable | None, alignment_weight: float,
                 classification_weight: float, seed: int, loss_scale: float = 1.0, trainable: bool = False) -> None:
        self.alignment_weight, self.classification_weight = float(alignment_weight), float(classification_weight)
        self.captions = captions
        self.loss_scale = float(loss_scale)
        self.memory: Tensor | None = None
        self.loss: nn.Module | None = None
        if self.alignment_weight:
            from plbench.losses.alignment import ImageTextAlignment

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.loss = ImageTextAlignment(head.embed_dim, captions.vectors.shape[1], ALIGNMENT_PROJ_DIM,
                                               trainable=trainable)
            self.loss.to(captions.vectors.device)
            head.embed.register_forward_hook(self._keep_memory)

    def _keep_memory(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
        if torch.is_grad_enabled():  # the training forward, not evaluation
            self.memory = torch.relu(output)  # the decoder's memory: relu(embed(tokens)), (B, L, E)

    def alignment(self, memory: Tensor, positions: Tensor) -> Tensor:
        """The alignment loss of the global batch: this process's memory tokens (B, L, E) and the captions of
        its training images ``positions`` (B,), with every other process's (one process: just these).

        Raises:
            InputError: memory of one token (a 1 x 1 map, pooled features): the alignment needs spatial tokens.
        """
        from plbench.methods.sync import gather_batch

        if memory.ndim != 3 or memory.shape[1] < 2:
            raise InputError(None, "--alignment-weight", "the alignment loss averages the decoder's spatial tokens, "
                             f"but the head got {memory.shape[1] if memory.ndim == 3 else 'no'} token per image (a "
                             "1 x 1 feature map or pooled features)", "use larger images (--image-size), a backbone "
                             "with a finer feature map, or a feature store extracted with --tokens")
        pooled = gather_batch(memory.float().mean(1))  # (B_global, E)
        where = gather_batch(positions.to(torch.int64), differentiable=False)
        if pooled.shape[0] == 0:  # no decodable image on any process
            return memory.sum() * 0.0
        return self.loss(pooled, self.captions(where))

    def combine(self, classification: Tensor, positions: Tensor) -> Tensor:
        total = classification * self.classification_weight if self.classification_weight != 1 else classification
        if self.alignment_weight:
            memory, self.memory = self.memory, None
            total = total + (self.alignment_weight / self.loss_scale) * self.alignment(memory, positions)
        return total


def attach(trainer: Any, config: Any, data: Any, model: nn.Module, device: torch.device) -> AlignmentTerm | None:
    """Add the alignment term to ``trainer``'s loss when the run asks for it (:func:`is_active`); else None and
    the trainer is left as it is."""
    if not is_active(config):
        return None
    from plbench.engine.zero_shot import zero_shot_head

    head = zero_shot_head(model)
    captions = None
    if config.alignment_weight:
        from plbench.engine.zero_shot import embedding_cache

        captions = CaptionTable(image_captions(data.train_labels, list(data.class_names)), config.class_embeddings,
                                device, embedding_cache(config), config.clip_model)
    term = AlignmentTerm(head, captions, config.alignment_weight, config.classification_weight, config.seed,
                         trainer.loss_scale, trainable=config.alignment_trainable)
    classification: Callable[[Tensor, Any], Tensor] = trainer.compute_loss
    empty: Callable[[Tensor, Any], Tensor] = trainer.empty_loss
    if config.alignment_trainable:
        _train_with(trainer, term.loss)

    def compute_loss(logits: Tensor, batch: Any) -> Tensor:
        return term.combine(classification(logits, batch), batch.index)

    def empty_loss(logits: Tensor, batch: Any) -> Tensor:  # an empty share still joins the term's gathers
        return term.combine(empty(logits, batch), batch.index)

    # this run's trainer only: the classification loss, then the term
    trainer.compute_loss, trainer.empty_loss = compute_loss, empty_loss
    return term


def _train_with(trainer: Any, module: nn.Module) -> None:
    """Optimise ``module``'s parameters with ``trainer``'s optimizer (a group at the run's learning rate, no
    weight decay; gradients averaged over processes under torchrun) and carry its state in the trainer's
    checkpoints (``extra["alignment"]``). Called before a checkpoint is restored, so the optimizer's groups
    match the saved ones."""
    from plbench.methods.sync import average_gradients

    trainer.optimizer.add_param_group({"params": list(module.parameters()), "weight_decay": 0.0, "lr_mult": 1.0})
    extra_state, load_extra_state, after_backward = trainer.extra_state, trainer.load_extra_state, \
        trainer.after_backward

    def averaged_after_backward() -> None:
        average_gradients(module.parameters())  # one process: nothing to do
        after_backward()

    def with_alignment() -> dict[str, Any]:
        return {**extra_state(), "alignment": module.state_dict()}

    def load_with_alignment(state: dict[str, Any]) -> None:
        state = dict(state)
        saved = state.pop("alignment", None)
        if saved is None:
            raise KeyError("alignment (the checkpoint has no learnable alignment projections)")
        module.load_state_dict(saved)
        load_extra_state(state)

    trainer.extra_state, trainer.load_extra_state = with_alignment, load_with_alignment
    trainer.after_backward = averaged_after_backward


__all__ = ["AlignmentTerm", "CaptionTable", "attach", "check_config", "image_captions", "is_active"]
