"""Every Markdown file the code, YAML, Makefile and docs name exists in the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Files whose text may name documents: code, configs, the Makefile and Markdown itself.
SCANNED_SUFFIXES = (".py", ".yaml", ".yml", ".md")
SCANNED_NAMES = ("Makefile",)
# Directories that are not part of the repository's own text (outside git, e.g. in an
# unpacked source tree).
PRUNED_DIRS = {"__pycache__", "results", "node_modules"}

# A path-like token ending in ".md" (not ".mdx"), not preceded by a path character.
MD_REFERENCE = re.compile(r"(?<![\w./-])([\w./-]*[\w-]\.md)(?![\w])")
URL = re.compile(r"\b[a-z]+://\S+")

# Files that analysis.aggregate writes into an experiment's report directory: the code
# names them as outputs, not as documents of this repository.
GENERATED = {"report.md", "results.md", "search.md", "ablation.md"}
GENERATED_BY = ROOT / "analysis" / "aggregate.py"


def repository_files(root: Path) -> list[Path]:
    """The repository's files: git's list where there is one, else a pruned walk."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.splitlines()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        listed = None
    if listed:
        return [root / name for name in listed if (root / name).is_file()]
    found = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [
            d for d in subdirs
            if not d.startswith(".") and d not in PRUNED_DIRS and not d.endswith(".egg-info")
        ]  # fmt: skip
        found.extend(Path(directory) / name for name in names)
    return found


def scanned_files(root: Path) -> list[Path]:
    return [
        p for p in repository_files(root)
        if p.suffix in SCANNED_SUFFIXES or p.name in SCANNED_NAMES
    ]  # fmt: skip


def md_references(text: str) -> list[str]:
    return MD_REFERENCE.findall(URL.sub(" ", text))


def missing_references(root: Path) -> list[str]:
    """'file:line: name' for every named .md file that resolves to nothing in ``root``."""
    missing = []
    for path in scanned_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for name in md_references(line):
                if Path(name).name in GENERATED:
                    continue
                # A path from the repository root, or relative to the naming file (links).
                if (root / name).is_file() or (path.parent / name).is_file():
                    continue
                missing.append(f"{path.relative_to(root)}:{number}: {name}")
    return missing


def test_every_named_markdown_file_is_in_the_repository() -> None:
    missing = missing_references(ROOT)
    assert not missing, "Named .md files that are not in the repository:\n" + "\n".join(missing)


def test_the_scan_sees_code_yaml_makefile_and_docs() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in scanned_files(ROOT)}
    assert {"README.md", "Makefile", "docs/method.md", "diffcps_ray/algorithm/config.py"} <= names
    assert any(n.endswith(".yaml") and "tune_configs/" in n for n in names)
    assert not any(n.startswith(".venv/") for n in names)


def test_a_reference_to_a_file_outside_the_repository_fails(tmp_path: Path) -> None:
    # Names built from parts, so that this file does not name missing documents itself.
    absent, kept, gone = (name + ".md" for name in ("pointmaze-notes", "docs/kept", "docs/gone"))
    (tmp_path / "docs").mkdir()
    (tmp_path / kept).write_text("# kept\n")
    (tmp_path / "config.yaml").write_text(f"# see {absent} and {kept}\n")
    (tmp_path / "Makefile").write_text(f"# {gone}\n")
    (tmp_path / "module.py").write_text(
        f'"""Details in {kept}, ``{absent}``; https://example.org/x/README.md."""\n'
        "# report.md is written by the analysis.\n"
    )
    assert sorted(missing_references(tmp_path)) == [
        f"Makefile:1: {gone}",
        f"config.yaml:1: {absent}",
        f"module.py:1: {absent}",
    ]


def test_generated_report_names_are_really_written_by_the_analysis() -> None:
    source = GENERATED_BY.read_text()
    for name in GENERATED:
        assert f'"{name}"' in source, f"{name} is no longer written by {GENERATED_BY.name}"


def test_every_document_in_docs_is_listed_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"README.md does not mention docs/{doc.name}"


# --- what the README and docs say about the commands and a demo run (issue 19) --------------

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
COMMAND = re.compile(r"python -m (diffcps_ray(?:\.\w+)*|analysis\.aggregate)\b(.*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
DATA_SUBCOMMANDS = ("generate", "convert", "inspect")


def documented_commands(texts: list[str]) -> dict[tuple[str, ...], set[str]]:
    """(module, subcommand...) -> the --flags the code blocks pass to it."""
    found: dict[tuple[str, ...], set[str]] = {}
    for text in texts:
        for block in FENCE.findall(text):
            for line in block.replace("\\\n", " ").splitlines():
                match = COMMAND.search(line.split(" # ")[0])
                if not match:
                    continue
                module, rest = match.group(1), match.group(2).split()
                key = (module, rest[0]) if module == "diffcps_ray.data" and rest and \
                    rest[0] in DATA_SUBCOMMANDS else (module,)
                found.setdefault(key, set()).update(FLAG.findall(match.group(2)))
    return found


def test_the_command_scan_reads_continued_lines_and_subcommands() -> None:
    text = ("```\npython -m diffcps_ray.tune --suite x \\\n    [--address A]  # --not-this\n"
            "python -m diffcps_ray.data generate --task t\n```\n`python -m diffcps_ray.toy --x`")
    assert documented_commands([text]) == {
        ("diffcps_ray.tune",): {"--suite", "--address"},
        ("diffcps_ray.data", "generate"): {"--task"},
    }


@pytest.mark.slow
def test_every_documented_flag_is_accepted_by_its_command() -> None:
    commands = documented_commands([doc.read_text() for doc in DOCUMENTS])
    assert ("diffcps_ray.tune",) in commands and ("analysis.aggregate",) in commands
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    unknown = []
    for (module, *sub), flags in sorted(commands.items()):
        done = subprocess.run([sys.executable, "-m", module, *sub, "--help"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip
        assert done.returncode == 0, f"{module} {' '.join(sub)} --help: {done.stderr[-2000:]}"
        accepted = set(FLAG.findall(done.stdout))
        unknown += [f"python -m {' '.join([module, *sub])} {flag}"
                    for flag in sorted(flags - accepted)]
    assert not unknown, "Documented flags the commands do not accept:\n" + "\n".join(unknown)


# Paths the README names inside a demo experiment ("results/demo/...", "results/demo-tb/...").
DEMO_PATH = re.compile(r"results/demo[\w-]*/([\w<>*./-]+)")
# Not written by a sweep without options: the report (analysis.aggregate) and MLflow's store.
NOT_FROM_A_PLAIN_SWEEP = ("report", "mlruns")


def documented_demo_paths(readme: str) -> set[str]:
    """Paths relative to the experiment directory, ``<...>`` placeholders as ``*``."""
    paths = set(DEMO_PATH.findall(readme))
    # The listing of results/demo/: backticked names before its `report/` part.
    head = "`results/demo/`:"
    listing = readme[readme.index(head) + len(head):]
    listing = listing[:listing.index("`report/`")]
    paths.update(re.findall(r"`([\w<>.-]+(?:/[\w<>.-]*)*)`", listing))
    globbed = {re.sub(r"<[^>]*>", "*", p).rstrip("/.") for p in paths}
    return {p for p in globbed if p and p.split("/")[0] not in NOT_FROM_A_PLAIN_SWEEP}


@pytest.mark.slow
def test_every_path_the_readme_names_in_a_demo_run_exists_after_a_sweep(
        smoke_sweep: Path) -> None:
    paths = documented_demo_paths((ROOT / "README.md").read_text())
    assert {"sweep", "optuna", "policies", "experiment.json"} <= {p.split("/")[0] for p in paths}
    missing = [p for p in sorted(paths)
               if not any(smoke_sweep.glob(p.replace("pointmaze-umaze", "*")))]
    assert not missing, f"README names these in results/demo/, a sweep lacks them: {missing}"
