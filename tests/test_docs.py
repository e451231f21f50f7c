"""The documentation site: the CLI reference is generated from the typer app and shows every command and
option; every page is in the navigation; every registered loss and every built-in method has its page, listed
in docs/methods/index.md, documenting its options with the code's defaults, and its CLI and experiment-file
examples build that method. (`mkdocs build --strict` in .ci/run checks links and API references.)"""

from __future__ import annotations

import importlib.util
import math
import re
import shlex
import sys
import tomllib
from pathlib import Path

import click
import pytest
import typer

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _mkdocs_config() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def _nav_files(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [f for v in nav.values() for f in _nav_files(v)]
    return [f for item in nav for f in _nav_files(item)]


def _directive_options() -> dict[str, str]:
    text = (DOCS / "cli.md").read_text()
    block = text.split("::: mkdocs-click", 1)[1]
    return dict(re.findall(r"^\s+:(\w+):\s*(.+?)\s*$", block, re.M))


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            out += _commands(sub, (*path, name))
    return out


def test_cli_reference_covers_every_command_and_option():
    mkdocs_click = pytest.importorskip("mkdocs_click._docs")
    from plbench.cli import app

    options = _directive_options()
    assert (options["module"], options["command"], options["prog_name"]) == ("plbench_cli", "cli", "plbench")
    # the hook mkdocs.yml names is what mkdocs-click imports: the click command of the app itself
    config = _mkdocs_config()
    (hook_path,) = config["hooks"]
    spec = importlib.util.spec_from_file_location(hook_path, REPO / hook_path)
    hook = importlib.util.module_from_spec(spec)
    sys.modules[hook_path] = hook
    try:
        spec.loader.exec_module(hook)
        assert sys.modules[options["module"]] is hook
    finally:
        sys.modules.pop(hook_path, None)
        sys.modules.pop(options["module"], None)
    expected = typer.main.get_command(app)
    assert sorted(hook.cli.commands) == sorted(expected.commands)
    page = "\n".join(mkdocs_click.make_command_docs(
        options["prog_name"], hook.cli, depth=int(options.get("depth", 0)), style=options.get("style", "plain"),
        list_subcommands=options.get("list_subcommands") == "true"))
    headings = {line.lstrip("#").strip() for line in page.splitlines() if line.startswith("#")}
    commands = _commands(expected)
    assert len(commands) > 15
    for path, command in commands:
        assert (path[-1] if path else "plbench") in headings, path
        ctx = click.Context(command)
        for param in command.get_params(ctx):
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and not getattr(param, "hidden", False):
                    assert opt in page, (" ".join(path), opt)  # the table style drops typer's options


def test_every_page_is_in_the_nav_and_every_loss_has_a_page():
    from plbench.losses import list_losses

    config = _mkdocs_config()
    nav = _nav_files(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "hooks" not in p.parts)
    assert sorted(nav) == pages  # no orphan page (mkdocs only logs them) and no missing file
    for name in list_losses():
        assert f"methods/{name}.md" in nav, f"loss {name!r} has no page docs/methods/{name}.md"
        assert f"`--loss {name}`" in (DOCS / "methods" / f"{name}.md").read_text()


def _method_page(name: str) -> str:
    page = DOCS / "methods" / f"{name}.md"
    assert page.is_file(), f"method {name!r} has no page docs/methods/{name}.md"
    return page.read_text()


def _option_rows(text: str) -> dict[str, str]:
    """Hyper-parameter table rows ``| `a`, `b` | default | ... |`` -> {name: default cell}."""
    out = {}
    for first, cell in re.findall(r"^\|\s*((?:`\w+`(?:,\s*)?)+)[^|]*\|\s*([^|]*?)\s*\|", text, re.M):
        for option in re.findall(r"`(\w+)`", first):
            out[option] = cell
    return out


def _documents_default(cell: str, default) -> bool:
    """Whether a table cell states ``default`` (numbers as written, tuples as (a, b, ...), None and bools as words)."""
    cell = cell.replace("\u2212", "-")  # the pages write minus signs as U+2212
    if default is None or isinstance(default, bool):
        return cell.split(":")[0].strip() == {None: "None", True: "true", False: "false"}[default]
    if isinstance(default, (int, float)):
        return math.isclose(float(cell), default)
    if isinstance(default, tuple):
        values = [float(v) for v in cell.strip("()[] ").split(",")]
        return len(values) == len(default) and all(math.isclose(a, b) for a, b in zip(values, default))
    return False


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def test_every_builtin_method_has_a_page_in_the_nav_and_the_index():
    from plbench.methods.loss_method import LossMethod
    from plbench.methods.registry import builtin_methods

    nav = _nav_files(_mkdocs_config()["nav"])
    index = (DOCS / "methods" / "index.md").read_text()
    methods = builtin_methods()
    assert {"role", "em", "em_apl", "ll_ct", "ll_cp", "hill", "splc", "gr_loss", "pasl", "an"} <= set(methods)
    for name, cls in sorted(methods.items()):
        text = _method_page(name)
        assert f"methods/{name}.md" in nav, f"docs/methods/{name}.md is not in mkdocs.yml's nav"
        assert re.search(rf"^\| `{name}` \| \[[^]]+\]\({name}\.md\) \|", index, re.M), \
            f"docs/methods/index.md has no row for {name!r}"
        flag = "--loss" if issubclass(cls, LossMethod) else "--method"
        assert f"`{flag} {name}`" in text, f"docs/methods/{name}.md does not say `{flag} {name}`"
        if issubclass(cls, LossMethod):
            continue  # the loss pages predate the method API and word their defaults their own way (`required`)
        assert cls.code and cls.code.removeprefix("github.com/") in text, (name, cls.code)
        rows = _option_rows(text)
        for option, default in cls.options().items():
            assert option in rows, f"docs/methods/{name}.md does not document option {option!r}"
            assert _documents_default(rows[option], default), \
                f"docs/methods/{name}.md gives {option} = {rows[option]!r}, the code {default!r}"


def test_method_page_examples_build_their_method():
    """Each page's `plbench train ... --method NAME --loss-option K=V` line and [[methods]] table are accepted."""
    from plbench.cli.train_cmd import parse_key_values
    from plbench.methods.loss_method import LossMethod
    from plbench.methods.registry import builtin_methods, create_method
    from plbench.sweep.spec import parse_spec

    base = {"sweep": {"name": "docs"}, "datasets": [{"name": "synthetic", "data_root": "data"}],
            "labels": [{"scheme": "spl"}]}
    checked = 0
    for name, cls in sorted(builtin_methods().items()):
        if issubclass(cls, LossMethod):
            continue
        text = _method_page(name)
        commands = [line for block in _code_blocks(text, "bash") for line in block.replace("\\\n", " ").splitlines()
                    if line.startswith("plbench train") and "--method" in line]
        tables = [tomllib.loads(block) for block in _code_blocks(text, "toml")]
        assert commands and tables, f"docs/methods/{name}.md lacks a plbench train example or a [[methods]] table"
        for line in commands:
            args = shlex.split(line, comments=True)
            assert args[args.index("--method") + 1] == name, line
            options = [args[i + 1] for i, a in enumerate(args) if a == "--loss-option"]
            assert isinstance(create_method(name, parse_key_values(options, "--loss-option")), cls), line
        for table in tables:
            (spec,) = parse_spec({**base, "methods": table["methods"]}).methods
            assert spec.method == name, table
            assert isinstance(create_method(name, spec.loss_options), cls)
        checked += 1
    assert checked >= 8
