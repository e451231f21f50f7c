"""``plbench train`` and ``plbench estimate-prior``: parse options, build a TrainConfig, call the engine."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from plbench.choices import Checkpoint, Head, MissingEmbeddings, Mode, Recipe
from plbench.cli.app import app, command, fail
from plbench.cli.options import DATASET_HELP, DataRoot, Force, dataset_options, option_group, refuse_existing
from plbench.config import TrainConfig
from plbench.embeddings.encoders import DEFAULT_CLIP_MODEL
from plbench.errors import InputError


Dataset = Annotated[str, typer.Option(help=DATASET_HELP)]
Simulation = Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                    help="Parquet file from `plbench simulate`; default: the dataset's own labels.")]
Backbone = Annotated[Optional[str], typer.Option(help="Any timm model name (default resnet10t; with --features, the "
                                                 "feature store's).")]
HeadOpt = Annotated[str, typer.Option("--head", help=f"Classification head: {', '.join(h.value for h in Head)} (built in), "
                                      "an installed plug-in (entry-point group plbench.heads), or package.module:Name.")]
RecipeOpt = Annotated[Optional[Recipe], typer.Option(
    "--recipe", help="Training recipe: csl (the CSL authors' train.py: Cutout + RandAugment, EMA 0.9997, 30 epochs, "
    "448 px on COCO/LVIS, 224 px on OpenImages) or light (flip only, no EMA). Default: csl for coco, lvis and "
    "openimages, light otherwise. Options below override the recipe's values.")]
ImageSize = Annotated[Optional[int], typer.Option(min=16, help="Square input size, pixels (default: the recipe's; "
                                                  "with --features, the feature store's).")]
BatchSize = Annotated[Optional[int], typer.Option(min=1, help="Global batch size (default: the recipe's, 64).")]
Epochs = Annotated[Optional[int], typer.Option(min=1, help="Epochs (default: the recipe's; csl 30, light 10).")]
Lr = Annotated[Optional[float], typer.Option(min=0.0, help="Peak learning rate, one-cycle (default 2e-4).")]
EmaDecay = Annotated[Optional[float], typer.Option(min=0.0, max=0.999999, help="Model EMA decay per step, 0 = none "
                                                   "(default: the recipe's; csl 0.9997).")]
Features = Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Folder from `plbench features "
                                                  "extract`: train only the head on cached features (linear protocol).")]
Seed = Annotated[int, typer.Option(min=0, help="Seed of initialisation, data order and augmentation.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Pretrained = Annotated[Optional[bool], typer.Option(
    help="Start from ImageNet weights: timm's (Hugging Face cache or download), else an installed weight package "
    "(tf_efficientnet_lite0/1/2 offline). Default: no; with --features, what the feature store was extracted with.")]
CheckpointFile = Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Local backbone weights file.")]
MaxImages = Annotated[Optional[int], typer.Option(min=1, help="Train on the first N images only.")]
Preload = Annotated[bool, typer.Option(help="Decode all images into memory once (small datasets).")]
Workers = Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")]
Amp = Annotated[bool, typer.Option(help="Mixed precision: bf16 autocast (on the CPU too), or fp16 with a gradient scaler on GPUs without bf16.")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the model (long GPU runs).")]
Split = Annotated[str, typer.Option(help="Split name.")]
CacheDir = Annotated[Optional[Path], typer.Option(file_okay=False, help="Image-cache root from `plbench data cache` "
                                                  "(holds <dataset>-<split>-<size>/), e.g. DATA_ROOT/plbench_cache.")]


def parse_key_values(items: list[str], option: str) -> dict[str, object]:
    """``["gamma_neg=4", "name=x"]`` -> ``{"gamma_neg": 4, "name": "x"}`` (values parsed as JSON when they can be)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(None, option, f"expected KEY=VALUE, but got {item!r}", f"write e.g. {option} gamma_neg=4")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


@option_group(dataset_options, into="dataset_options")
def training_options(
    dataset: Dataset = "synthetic",
    data_root: DataRoot = Path("data/synthetic"),
    simulation: Simulation = None,
    backbone: Backbone = None,
    head: HeadOpt = Head.GAP.value,
    recipe: RecipeOpt = None,
    image_size: ImageSize = None,
    batch_size: BatchSize = None,
    epochs: Epochs = None,
    lr: Lr = None,
    ema_decay: EmaDecay = None,
    features: Features = None,
    seed: Seed = 0,
    device: Device = "auto",
    pretrained: Pretrained = None,
    checkpoint: CheckpointFile = None,
    max_train_images: MaxImages = None,
    preload: Preload = False,
    workers: Workers = 0,
    amp: Amp = False,
    compile: Compile = False,
    train_split: Split = "train",
    val_split: Split = "val",
    cache_dir: CacheDir = None,
    dataset_options: dict | None = None,
) -> dict[str, object]:
    """The options `train` and `estimate-prior` share, as TrainConfig fields (paths as str).

    With ``--features``, the feature store fixes ``backbone``, ``image_size`` and ``pretrained``
    (:func:`store_fixed_values`); then the recipe (``--recipe`` or the dataset's default) fills every recipe
    setting the user left out.
    """
    values = dict(locals())
    from plbench.engine.recipes import default_recipe, recipe_values

    if features is not None:
        values.update(store_fixed_values(features, train_split, backbone=backbone, image_size=image_size,
                                         pretrained=pretrained))
    values["backbone"] = values["backbone"] or "resnet10t"
    values["pretrained"] = bool(values["pretrained"])

    for key in ("data_root", "simulation", "checkpoint", "cache_dir", "features"):
        if values[key] is not None:
            values[key] = str(values[key])
    from plbench.heads import resolve_head

    resolve_head(head, field="--head")  # named as the option here; the config checks it again as `head`
    values["dataset_options"] = dataset_options or {}
    preset = recipe_values(recipe or default_recipe(dataset), dataset)
    for key, value in preset.items():
        if values.get(key) is None:
            values[key] = value
    return values


def store_fixed_values(features: Path, split: str, **given: object) -> dict[str, object]:
    """``backbone``, ``image_size`` and ``pretrained`` as the feature store of ``split`` in ``features``
    records them; a value the user gave (not None) must agree.

    Raises:
        InputError: a given value contradicts the store (naming both), or no readable store.
    """
    from plbench.artifacts.features import store_folder
    from plbench.engine.features import store_settings

    stored = store_settings(features, split)
    for key, value in given.items():
        if value is not None and value != stored[key]:
            option = "--" + key.replace("_", "-")
            shown = (option if value else f"--no-{key}") if isinstance(value, bool) else f"{option} {value}"
            want = (option if stored[key] else f"--no-{key}") if isinstance(value, bool) else f"{option} {stored[key]}"
            raise InputError(store_folder(features, split), key, f"{shown} contradicts the feature store, which was "
                             f"extracted with {want}", f"leave out {option} (the store's value is used), or "
                             "extract features with the value you want")
    return stored


@command(app, "train")
@option_group(training_options, into="common")
def train_command(
    mode: Annotated[Optional[Mode], typer.Option(
        help="How unannotated labels are treated (losses pasl, asl, bce; default selective for pasl, negative for "
        "asl/bce). Losses without modes (an, an_ls, wan, epr, ll_r) take none.")] = None,
    prior: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                  help="Prior CSV (Classes,avg_pred) for --mode selective.")] = None,
    loss: Annotated[str, typer.Option(help="Loss: pasl (partial ASL, uses --mode), asl, bce, an, an_ls, wan, epr, ll_r.")] = "pasl",
    loss_option: Annotated[Optional[List[str]], typer.Option(
        help="Loss hyper-parameter KEY=VALUE (repeatable), e.g. gamma_neg=4, expected_num_pos=2.9 for epr.")] = None,
    method: Annotated[Optional[str], typer.Option(
        help="Method instead of --loss: a name from `plbench methods list` (role, em_apl, ll_ct, ..., every loss), an "
        "installed plug-in, or package.module:Name; its options via --loss-option.")] = None,
    out: Annotated[Path, typer.Option(help="Folder of run folders.")] = Path("runs"),
    run_name: Annotated[Optional[str], typer.Option(help="Run folder name (default derived from the config).")] = None,
    config: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                   help="Train from a saved config.json (other options ignored).")] = None,
    resume_from: Annotated[Checkpoint, typer.Option(
        help="Checkpoint an unfinished run continues from: last, or best after a damaged last.pt.")] = Checkpoint.LAST,
    select_split: Annotated[Optional[str], typer.Option(help=(
        "Split of the same dataset scored every epoch to choose the epoch (ties: the earliest): the summary's "
        "selected_map is the validation mAP at that epoch, and best.pt that epoch. The single-positive protocol: "
        "--train-split train2014-spml-train --val-split val2014 --select-split train2014-spml-val (Cole et al.'s "
        "held-out 20 %). Default: none; best.pt is then selected on the validation split itself."))] = None,
    init_head: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help=(
        "Start the head from the best checkpoint of another run folder with the same classes and head (Cole et "
        "al.'s 'linear init': a linear run on frozen features first, then this end-to-end run from its head)."))] = None,
    zsl_split: Annotated[Optional[str], typer.Option(
        help="Zero-shot: 'nuswide' (925 seen tags / 81 unseen concepts) or a split file (benchmark_81_v0.json-style "
        "JSON, or unseen class names one a line). Trains on the seen classes (images without one dropped), then "
        "evaluates ZSL and GZSL; needs --head ml-decoder and --class-embeddings.")] = None,
    class_embeddings: Annotated[Optional[str], typer.Option(
        help="Zero-shot class embeddings: glove, minilm, random (control), clip:CHECKPOINT, or a file "
        "(wordvec_array.pth, GloVe pickle, .npy/.pt/.csv).")] = None,
    prompt: Annotated[Optional[str], typer.Option(
        help='Zero-shot prompt template with one {} for the class name, e.g. "a photo of a {}" (encoders only).')] = None,
    clip_model: Annotated[str, typer.Option(
        help="Zero-shot: the open_clip architecture of the --class-embeddings clip:CHECKPOINT (e.g. ViT-B-16, RN50; "
        "open_clip.list_models() lists them).")] = DEFAULT_CLIP_MODEL,
    missing_embeddings: Annotated[MissingEmbeddings, typer.Option(
        help="Zero-shot: a class the --class-embeddings source has no vector for (a name absent from the file, or "
        "without any word GloVe knows) is an error, or gets a zero vector (listed in summary.json zero_shot.missing)."
    )] = MissingEmbeddings.ERROR,
    alignment_weight: Annotated[float, typer.Option(min=0.0, help=(
        "Zero-shot ML-Decoder: weight of CLIP-Decoder's image-caption alignment loss (captions 'a photo of a, b "
        "and c' of each image's positive seen labels, embedded with the --class-embeddings encoder) added to the "
        "classification loss; 0: off."))] = 0.0,
    classification_weight: Annotated[float, typer.Option(min=0.0, help=(
        "Zero-shot: weight of the classification loss in the total (CLIP-Decoder: 1)."))] = 1.0,
    alignment_trainable: Annotated[bool, typer.Option("--alignment-trainable", help=(
        "Learn the alignment loss's projections and temperature with the model, as the CLIP-Decoder paper "
        "describes; default: frozen at their seeded random values, as the authors' published (GPU) runs were."))] = False,
    common: dict | None = None,
) -> None:
    """Train a partial-label classifier into a run folder (resumes an unfinished run).

    Under torchrun (`torchrun --nproc-per-node N -m plbench train ...`) every process trains its share of
    each global batch with DistributedDataParallel; rank 0 writes the run folder.
    """
    from plbench.engine import distributed as dist
    from plbench.engine.train import TrainingInterrupted, train

    if config is not None:
        cfg = TrainConfig.load(config)
    else:
        from plbench.engine.zero_shot import default_dataset_options

        common = dict(common or {})
        common["dataset_options"] = default_dataset_options(common["dataset"], common["data_root"], zsl_split,
                                                            common["dataset_options"])
        cfg = TrainConfig(
            **common, mode=default_mode(loss, mode) if method is None else method_mode(method, mode),
            prior=None if prior is None else str(prior), loss=loss, method=method, select_split=select_split,
            loss_options=parse_key_values(loss_option or [], "--loss-option"), out_dir=str(out), run_name=run_name,
            zsl_split=zsl_split, class_embeddings=class_embeddings, prompt=prompt,
            missing_embeddings=MissingEmbeddings(missing_embeddings).value, clip_model=clip_model,
            init_head=None if init_head is None else str(init_head), alignment_weight=alignment_weight, classification_weight=classification_weight,
            alignment_trainable=alignment_trainable,
        )
    dist.init_from_env(cfg.device)
    main = dist.is_main()  # asked before the process group is shut down
    try:
        result = train(cfg, resume_from=resume_from.value, command=shlex.join(["plbench", *sys.argv[1:]]))
    except TrainingInterrupted as e:
        if main:
            fail(f"Interrupted at epoch {e.epoch + 1}, step {e.step}; a checkpoint was saved in {e.run_dir}. "
                 f"Resume with: plbench train --config {e.run_dir / 'config.json'}", code=130)
        raise typer.Exit(130) from None
    finally:
        dist.shutdown()
    if main:
        s = result.summary
        ema = "" if s.get("val_map_ema") is None else f", plain model {_pct(s['val_map_plain'])}"
        chosen = "" if not s.get("selection_split") else (
            f"; at the epoch chosen on {s['selection_split']} ({_epoch(s.get('selected_epoch'))}): "
            f"{_pct(s.get('selected_map'))}")
        typer.echo(f"{result.run_dir}: final mAP {_pct(s['val_map'])} ({s['evaluation_protocol']}{ema}; best epoch "
                   f"{_pct(s['best_val_map'])} and authors' protocol {_pct(s['authors_map'])}, both selected on the "
                   f"evaluation split{chosen}) on {s['val_images']} validation images")


def _epoch(epoch: int | None) -> str:
    """An epoch of the summary (from 0) as the status lines count it (from 1)."""
    return "no epoch" if epoch is None else f"epoch {epoch + 1}"


def _pct(value: float | None) -> str:
    """A mAP for the status line; ``n/a`` where it does not exist (null in summary.json, or NaN)."""
    return "n/a" if value is None or value != value or abs(value) == float("inf") else f"{value:.2f}"


def method_mode(method: str, mode: Mode | None) -> str | None:
    """The mode a ``--method`` run uses: the given one, else the method's default (none for most methods)."""
    from plbench.methods.api import resolve_method_mode
    from plbench.methods.registry import resolve_method

    try:
        return resolve_method_mode(resolve_method(method), method, None if mode is None else mode.value)
    except ValueError as e:
        raise InputError(None, "--mode", str(e), "pass --mode for a method with modes; leave it out otherwise") from None


def default_mode(loss: str, mode: Mode | None) -> str | None:
    """The mode a run uses: the given one, else the loss's default (plbench.losses.resolve_mode)."""
    from plbench.losses import LOSSES, resolve_mode

    if loss not in LOSSES:
        raise InputError(None, "--loss", f"unknown loss {loss!r}; available: {', '.join(sorted(LOSSES))}",
                         "pick a loss from `plbench train --help`")
    try:
        return resolve_mode(loss, mode)
    except ValueError as e:
        raise InputError(None, "--mode", str(e), "leave out --mode for this loss") from None


@command(app, "estimate-prior")
@option_group(training_options, into="common")
def estimate_prior_command(
    out: Annotated[Optional[Path], typer.Option(dir_okay=False, help="Prior CSV to write (default priors/<name>.csv).")] = None,
    compare_modes: Annotated[bool, typer.Option(
        help="Also train a Negative-mode temporary model and compare both estimates (the CSL README's table).")] = False,
    force: Force = False,
    common: dict | None = None,
) -> None:
    """Estimate class priors with a temporary Ignore-mode model; writes `Classes,avg_pred` CSV.

    Beside the CSV, NAME.comparison.md compares the estimate with the naive prior of the partial labels
    (positives / annotated) and, when the split's own labels are complete, with the true class frequencies:
    Spearman rank correlation, mean absolute error and the ten highest classes of each.
    """
    from plbench.artifacts.atomic import write_text
    from plbench.engine.prior import compare_priors, estimate_prior
    from plbench.engine.inputs import load_training_data
    from plbench.priors import default_prior_path, write_prior_csv

    cfg = TrainConfig(**(common or {}), mode=Mode.IGNORE.value)
    if out is None:
        out = default_prior_path(cfg.dataset, cfg.simulation, cfg.backbone, cfg.seed)
    refuse_existing(out, force)  # before the training: runs name their prior file, replacing it changes them
    data = load_training_data(cfg)  # loaded once for the averaging passes and the comparison
    names, prior = estimate_prior(cfg, data=data)
    estimates = {"ignore model (CSL)": prior}
    if compare_modes:
        estimates["negative model"] = estimate_prior(cfg, mode=Mode.NEGATIVE, data=data)[1]
    write_prior_csv(out, names, prior)
    table = compare_priors(cfg, estimates, data=data).markdown()
    write_text(out.with_suffix(".comparison.md"), f"# Prior estimate: {out.name}\n\n{table}")
    typer.echo(f"wrote {out}: {len(names)} classes, mean prior {prior.mean():.4f}\n\n{table}")
