"""``plbench simulate``: load a dataset split, simulate partial labels, write the parquet file, summarise."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from plbench.cli.app import app, command
from plbench.cli.options import DATASET_HELP, Force, dataset_options, option_group, refuse_existing
from plbench.errors import InputError
from plbench.labels import PartialLabels
from plbench.simulate import Scheme
from plbench.simulate_biased import INSTANCE_DATASETS, Bias

_MAX_LISTED = 10


def summarise(before: PartialLabels, after: PartialLabels, out: Path, seconds: float) -> str:
    """The few lines ``plbench simulate`` prints: annotated fraction, positives/negatives kept,
    and the classes left without any positive."""
    b, a = before.counts(), after.counts()
    pos_b, neg_b = int(b.positives.sum()), int(b.negatives.sum())
    pos_a, neg_a = int(a.positives.sum()), int(a.negatives.sum())
    pct = (lambda x, y: 100.0 * x / y if y else 0.0)
    lost = np.flatnonzero(a.positives == 0)
    never = np.flatnonzero(b.positives == 0)
    lines = [
        f"wrote {out} ({seconds:.2f} s)",
        f"images x classes:   {after.num_images} x {after.num_classes}",
        f"annotated fraction: {after.annotated_fraction():.6f} (before: {before.annotated_fraction():.6f})",
        f"positives kept:     {pos_a} of {pos_b} ({pct(pos_a, pos_b):.2f}%)",
        f"negatives kept:     {neg_a} of {neg_b} ({pct(neg_a, neg_b):.2f}%)",
        f"classes with no positive left: {lost.size} of {after.num_classes}"
        + (f" ({never.size} had none before)" if never.size else ""),
    ]
    if lost.size:
        names = ", ".join(after.class_names[i] for i in lost[:_MAX_LISTED])
        lines.append(f"  {names}" + (", ..." if lost.size > _MAX_LISTED else ""))
    return "\n".join(lines)


@command(app, "simulate")
@option_group(dataset_options, into="options")
def simulate_command(
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)],
    data_root: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Dataset root folder.")],
    scheme: Annotated[Scheme, typer.Option(help="fpc: n positives and n negatives per class; rps: hide each "
                                                "annotation with probability p; spl: one positive per image.")],
    seed: Annotated[int, typer.Option(min=0, help="Seed of the simulation (same seed, same file).")],
    param: Annotated[Optional[float], typer.Option(help="fpc: n per class (integer); rps: p in [0, 1]; spl: not used.")] = None,
    split: Annotated[str, typer.Option(help="Split to simulate.")] = "train",
    bias: Annotated[Bias, typer.Option(help="spl only: which positive is kept. uniform: a random one (Cole et al.); "
                                            "size / largest: by summed instance area (sampled / the largest); "
                                            "location: near the image centre; frequency: by class frequency "
                                            "(Arroyo et al. 2023). Recorded as scheme spl-<bias>.")] = Bias.UNIFORM,
    out: Annotated[Optional[Path], typer.Option(dir_okay=False, help="Output parquet file; default: "
                                                "simulations/<dataset>-<scheme><param>-s<seed>.parquet.")] = None,
    force: Force = False,
    options: dict | None = None,
) -> None:
    """Simulate partial labels (FPC, RPS or single positive, uniform or biased) from a dataset split into a parquet file."""
    from plbench.artifacts.simulations import default_simulation_path, save_simulation
    from plbench.datasets import load_dataset
    from plbench.simulate import normalise_param, simulate
    from plbench.simulate_biased import biased_scheme_name, simulate_biased_spl

    if bias is not Bias.UNIFORM and scheme is not Scheme.SPL:
        raise InputError(None, "--bias", f"expected --bias only with --scheme spl, but got scheme {scheme.value}",
                         "drop --bias, or pass --scheme spl")
    if bias.needs_instances and dataset not in INSTANCE_DATASETS:
        raise InputError(None, "--bias", f"bias {bias.value} reads object areas and boxes, which the {dataset} loader "
                         f"does not provide (only {', '.join(INSTANCE_DATASETS)})", "use --bias uniform or frequency")
    scheme_name = biased_scheme_name(bias) if scheme is Scheme.SPL else scheme.value

    if scheme is not Scheme.SPL and param is None:
        raise InputError(None, "--param", f"expected a parameter for scheme {scheme.value}, but got none",
                         "add --param N (fpc: count per class) or --param P (rps: probability)")
    try:
        value = normalise_param(scheme, param)
    except ValueError as e:
        raise InputError(None, "--param", str(e), "pass --param 1000 for fpc or --param 0.5 for rps") from None
    path = out if out is not None else default_simulation_path(dataset, scheme_name, value, seed, split=split)
    refuse_existing(path, force)  # runs name their simulation file: replacing it silently changes what they mean
    t0 = time.perf_counter()
    options = options or {}
    data = load_dataset(dataset, data_root, split, **options)
    if scheme is Scheme.SPL:
        instances = None
        if bias.needs_instances:
            from plbench.datasets.coco import coco_instances

            instances = coco_instances(data_root, split, data.labels, include_crowd=options.get("include_crowd", True))
        labels = simulate_biased_spl(data.labels, bias, seed, instances)
    else:
        labels = simulate(data.labels, scheme, value, seed)
    # uniform spl files stay as they were; a biased one also names its bias
    extra = {"split": split, "dataset_options": options, **({"bias": bias.value} if bias is not Bias.UNIFORM else {})}
    save_simulation(path, labels, dataset=data.dataset, fingerprint=data.fingerprint, scheme=scheme_name,
                    param=value, seed=seed, extra=extra)
    typer.echo(summarise(data.labels, labels, path, time.perf_counter() - t0))
