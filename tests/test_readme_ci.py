"""The README's two set-up commands are what .ci/run executes."""

import re

from conftest import REPO


def setup_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def ci_lines() -> list[str]:
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_exactly_two_setup_commands():
    cmds = setup_commands()
    assert len(cmds) == 2, cmds
    assert all("\n" not in c for c in cmds)
    assert cmds[0].endswith("&& plbench demo")


def test_ci_installs_as_readme_says_and_runs_its_tests():
    install, tests = setup_commands()
    install_part = install.split("&&")[0].strip()
    lines = ci_lines()
    assert install_part in lines
    assert tests in lines
    # the test command decides CI's exit status; only the strict docs build (docs/, mkdocs.yml) may follow it
    after = lines[lines.index(tests) + 1:]
    assert after in ([], ['NO_MKDOCS_2_WARNING=1 mkdocs build --strict -d "$(mktemp -d)"']), after
    assert lines[0] == "set -euo pipefail"
