"""Every top-level script's --help shows its docstring, and every command line the docstring or the README shows
parses with that script's own flags, spelled out in full (a renamed flag, or one that only works as an argparse
abbreviation of another, fails here)."""

import importlib
import re
import shlex

import pytest

from utils.paths import REPO

SCRIPTS = sorted(p.stem for p in REPO.glob("*.py") if "\ndef parse_args(" in p.read_text())
COMMAND = re.compile(r"^(?:[A-Za-z-]+:\s+)?python (\w+)\.py\b(.*)$")  # 'Pretraining:  python train.py ...' too


def command_lines(text: str) -> list[tuple[str, list[str]]]:
    """(script, argv) of each line that starts with 'python <script>.py', backslash continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        match = COMMAND.match(line.strip())
        if match:
            argv = shlex.split(match.group(2), comments=True)
            # '[--flag VALUE]' marks an optional part of a usage line; the flag and value themselves must parse
            found.append((match.group(1), [a.removeprefix("[").removesuffix("]") for a in argv]))
    return found


def readme_commands() -> list[tuple[str, list[str]]]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.M | re.S)
    return [c for block in blocks for c in command_lines(block)]


def check_parses(name: str, argv: list[str], help_text: str) -> None:
    module = importlib.import_module(name)
    try:
        module.parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"documented command 'python {name}.py {shlex.join(argv)}' does not parse (exit {e.code})")
    # a token with a space is a value (argparse reads it so too), e.g. --slurm_args "--partition=gpu --time=2:00:00"
    for flag in (a.split("=", 1)[0] for a in argv if a.startswith("--") and " " not in a):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), f"{name}.py: {flag} is not a flag"


def help_of(name: str, capsys: pytest.CaptureFixture) -> str:
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as e:
        module.parse_args(["--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_the_docstring_whose_commands_parse(name, capsys):
    module = importlib.import_module(name)
    out = help_of(name, capsys)
    assert out.startswith("usage: ")
    assert module.__doc__.strip().splitlines()[0] in out  # what the script is for comes first
    documented = command_lines(module.__doc__)
    assert documented and all(script == name for script, _ in documented), "no usage line of its own"
    for _, argv in documented:
        check_parses(name, argv, out)


def test_readme_commands_parse(capsys):
    commands = readme_commands()
    assert {name for name, _ in commands} <= set(SCRIPTS)
    for name, argv in commands:
        check_parses(name, argv, help_of(name, capsys))


def test_all_scripts_are_found():
    # the parametrisation above must not go empty if scripts move
    assert {"train", "self_verify", "eval", "fusion", "tag_files"} <= set(SCRIPTS) and len(SCRIPTS) >= 12
