"""Option groups: declared once, delivered to each command as one argument."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from plbench.cli.options import dataset_options, option_group


def _app(fn) -> typer.Typer:
    app = typer.Typer()
    app.command("x")(fn)
    app.command("y")(lambda: None)  # two commands: typer keeps the subcommand name
    return app


def test_group_values_arrive_as_one_argument(tmp_path):
    seen = {}

    @option_group(dataset_options, into="opts")
    def cmd(n: Annotated[int, typer.Option()] = 3, opts: dict | None = None) -> None:
        seen.update(n=n, opts=opts)

    classes = tmp_path / "classes.txt"
    classes.write_text("/m/01\n")
    result = CliRunner().invoke(_app(cmd), ["x", "--n", "5", "--strict", "--fo-field", "gt",
                                            "--class-list", str(classes)])
    assert result.exit_code == 0, result.output
    assert seen == {"n": 5, "opts": {"fo_field": "gt", "class_list": str(classes), "strict": True}}
    result = CliRunner().invoke(_app(cmd), ["x", "--class-list", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2  # the group's own validation (exists=True) still applies


def test_a_command_cannot_redeclare_a_group_option():
    def cmd(strict: bool = False, opts: dict | None = None) -> None:
        pass

    with pytest.raises(ValueError, match=r"already declares \['strict'\]"):
        option_group(dataset_options, into="opts")(cmd)


def test_defaults_without_options():
    assert dataset_options() == {"strict": False}
    assert dataset_options(class_list=Path("a/b.txt")) == {"class_list": "a/b.txt", "strict": False}
