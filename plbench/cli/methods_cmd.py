"""``plbench methods list`` and ``plbench methods show NAME``: the built-in and installed methods."""

from __future__ import annotations

from typing import Annotated

import typer

from plbench.cli.app import app, command

methods_app = typer.Typer(help="List and describe training methods (built-in and installed plug-ins).",
                          no_args_is_help=True)
app.add_typer(methods_app, name="methods")


@command(methods_app, "list")
def list_command() -> None:
    """Every method `plbench train --method` accepts, with where it comes from and a one-line summary."""
    from plbench.methods.registry import list_methods

    entries = list_methods()
    width = max(len(e.name) for e in entries)
    for e in entries:
        origin = "" if e.origin == "built-in" else f" [{e.origin}]"
        text = f"(cannot be used: {e.error})" if e.error else e.summary
        typer.echo(f"{e.name:<{width}}  {text}{origin}")
    typer.echo(f"\n{len(entries)} methods; details: plbench methods show NAME; outside code: --method package.module:Name")


@command(methods_app, "show")
def show_command(
    name: Annotated[str, typer.Argument(help="A built-in or installed method name, or package.module:Name.")],
) -> None:
    """A method's options with their defaults, what it needs from a run, its paper and its source."""
    from plbench.methods.api import REQUIRED
    from plbench.methods.provenance import method_provenance
    from plbench.methods.registry import resolve_method

    cls = resolve_method(name, field="NAME")
    prov = method_provenance(cls, name)
    origin = prov.get("wraps", prov)
    package = f" ({origin['package']} {origin['version'] or ''})".rstrip() if origin["package"] else ""
    lines = [f"{name}: {cls.one_line()}", f"  class:      {origin['import_path']}{package}"]
    if cls.paper:
        lines.append(f"  paper:      {cls.paper}")
    if cls.code:
        lines.append(f"  code:       {cls.code}")
    needs = cls.needs.names()
    lines.append(f"  needs:      {', '.join(needs) if needs else 'nothing beyond logits and targets'}")
    if cls.needs.mode:
        lines.append(f"  mode:       default {cls.default_mode or '(none: --mode required)'}")
    lines.append(f"  reduction:  {cls.reduction} over the batch")
    options = cls.options()
    lr_mult = options.get("lr_mult", cls.lr_mult)
    if lr_mult != 1.0:
        lines.append(f"  lr_mult:    {lr_mult} x the model's learning rate for the method's parameters")
    lines.append("  options (--loss-option KEY=VALUE):" if options else "  options:    none")
    by_dataset = cls.dataset_defaults()
    varying = {k for values in by_dataset.values() for k in values}
    width = max((len(k) for k in options), default=0)
    for key, default in options.items():
        shown = "REQUIRED" if default is REQUIRED else repr(default)
        if key in varying and default is None:
            shown = "by dataset (below)"
        lines.append(f"    {key:<{width}} = {shown}")
    if by_dataset:
        other = "give these options" + (", or settings=DATASET to take a column" if "settings" in options else "")
        lines += ["  defaults by the run's dataset (an option given overrides its row):",
                  *_table(by_dataset, [k for k in options if k in varying], indent=4),
                  f"  another dataset: {other}"]
    typer.echo("\n".join(lines))


def _table(by_dataset: dict[str, dict], keys: list[str], *, indent: int) -> list[str]:
    """Rows: an option per line, a dataset per column; '-' where a dataset has no value."""
    rows = [["option", *by_dataset]] + [[k, *(repr(by_dataset[ds][k]) if k in by_dataset[ds] else "-"
                                             for ds in by_dataset)] for k in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [" " * indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
