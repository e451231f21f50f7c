"""Option types shared by several commands, and option groups declared once for all of them."""

from __future__ import annotations

import functools
import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from plbench.datasets import list_datasets
from plbench.datasets.nuswide import NusWideLabels
from plbench.datasets.openimages import OpenImagesLabels
from plbench.errors import InputError


class ZslClasses(str, Enum):
    """Which classes of a zero-shot run's split a command scores (``plbench evaluate``, ``export model``)."""

    seen = "seen"
    unseen = "unseen"
    all = "all"

#: the ``--dataset`` help: every registered loader
DATASET_HELP = f"Dataset loader: {', '.join(list_datasets())}."
DatasetName = Annotated[str, typer.Option("--dataset", help=DATASET_HELP)]
DataRoot = Annotated[Path, typer.Option(help="Dataset root folder, as its publisher ships it.")]
FoDataset = Annotated[Optional[str], typer.Option(help="FiftyOne dataset name (--dataset fiftyone).")]
FoField = Annotated[Optional[str], typer.Option(help="FiftyOne Classifications field of positive labels.")]
FoNegatives = Annotated[Optional[str], typer.Option(help="FiftyOne Classifications field of negative labels.")]
ClassList = Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                   help="OpenImages: file of MIDs fixing the classes.")]
OpenImagesLabelsKind = Annotated[Optional[OpenImagesLabels], typer.Option(
    help="OpenImages: read the full human-verified labels or the boxable subset (required when both are present).")]
NusWideLabelsKind = Annotated[Optional[NusWideLabels], typer.Option(
    help="NUS-WIDE (official layout): the 81 human-annotated concepts (default), the 1,000 noisy user tags, or zsl: "
    "the 925 seen tags then the 81 unseen concepts (the default with --zsl-split nuswide).")]
Strict = Annotated[bool, typer.Option(help="Missing or undecodable images are errors instead of being counted.")]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output (refused otherwise).")]


def refuse_existing(path: Path, force: bool, option: str = "--out", what: str = "file") -> None:
    """Raise :class:`InputError` when ``path`` exists (a folder: holds anything) and ``force`` is off, or when
    a file stands where its folder should be.

    Called before any work, so a refused command has done nothing; with ``force`` the output is still
    replaced atomically by its writer.
    """
    path = Path(path)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():  # checked now, not after an hour of work
        raise InputError(ancestor, option, f"expected a folder to write {path.name} in, but {ancestor} is a file",
                         f"choose another {option}")
    exists = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if exists and not force:
        raise InputError(path, option, f"expected a new {what}, but it exists already",
                         f"pass --force to replace it, or choose another {option}")


def option_group(template: Callable[..., Any], into: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of ``template``, delivered as one argument ``into``.

    The command's CLI signature becomes its own parameters (less ``into``) followed by the template's;
    at call time the template is called with its options and its result is passed as ``into``. So a
    group of options (and what is built from them) is declared once for every command that takes it.
    """
    group = list(inspect.signature(template, eval_str=True).parameters.values())
    names = [p.name for p in group]

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != into]
        clash = {p.name for p in own} & set(names)
        if clash:
            raise ValueError(f"{fn.__name__} already declares {sorted(clash)} of the {template.__name__} group")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[into] = template(**{n: kwargs.pop(n) for n in names if n in kwargs})
            return fn(*args, **kwargs)

        params = own + group
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return deco


def dataset_options(
    fo_dataset: FoDataset = None,
    fo_field: FoField = None,
    fo_negatives: FoNegatives = None,
    class_list: ClassList = None,
    strict: Strict = False,
    openimages_labels: OpenImagesLabelsKind = None,
    nuswide_labels: NusWideLabelsKind = None,
) -> dict[str, Any]:
    """Loader keyword options from the common CLI options (``None`` values left out, paths and enums as str)."""
    opts = {"fo_dataset": fo_dataset, "fo_field": fo_field, "fo_negatives": fo_negatives,
            "class_list": None if class_list is None else str(class_list), "strict": strict,
            "openimages_labels": None if openimages_labels is None else OpenImagesLabels(openimages_labels).value,
            "nuswide_labels": None if nuswide_labels is None else NusWideLabels(nuswide_labels).value}
    return {k: v for k, v in opts.items() if v is not None}
