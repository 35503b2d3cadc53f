"""Every Markdown file the code, YAML, Makefile and docs name exists in the repository."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

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
