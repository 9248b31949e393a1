"""The README and docs/ against the repository: what they name must exist and what they state must hold.

Checked where it can be: the README's length (a front page, not a manual), every ``make <target>``,
every repository path (in backticks or links), every link's ``#anchor``, every ``lakehouse <command>``
shown, the "where does X live" index (each module, file, function and class it names exists where it
says), and the README's numbers that the repository can confirm (test count, uv and Python versions,
the demo's size). Timings vary with the machine and are not checked.

Pages: the README, docs/, and the READMEs of dbt_project/, sql/, bench/ and dashboards/.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
FOLDER_READMES = [ROOT / folder / "README.md" for folder in ("dbt_project", "sql", "bench", "dashboards")]
PAGES = [README, *DOCS, *FOLDER_READMES]
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# top-level folders whose paths the docs name; a path under one of them must exist
PATH_ROOTS = (
    "src/",
    "assets/",
    "orchestration/",
    "sql/",
    "dbt_project/",
    "tests/",
    "bench/",
    "deploy/",
    "dashboards/",
    "docs/",
    "config/",
)

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def fenced_blocks(doc: str) -> list[str]:
    return [m.group(0) for m in FENCE.finditer(doc)]


def inline_spans(doc: str) -> list[str]:
    return [m.group(2) for m in INLINE.finditer(FENCE.sub("", doc))]


def code(doc: str) -> list[str]:
    """Everything shown as code: fenced blocks and inline spans (commands are never prose)."""
    return fenced_blocks(doc) + inline_spans(doc)


# --- (a) the README is a front page -------------------------------------------------------------


def test_readme_is_a_front_page():
    lines = text(README).splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; keep it under 150 and move details to docs/"


# --- (b) make targets ---------------------------------------------------------------------------


def makefile_targets() -> set[str]:
    makefile = text(ROOT / "Makefile")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, re.M))


MAKE = re.compile(r"(?:^|[\s;&|(`])make\s+([a-z][a-z0-9_-]*)", re.M)


def test_every_make_target_named_exists():
    targets = makefile_targets()
    missing = []
    for page in PAGES:
        for snippet in code(text(page)):
            for target in MAKE.findall(snippet):
                if target not in targets:
                    missing.append(f"{rel(page)}: make {target}")
    assert not missing, "make targets named in the docs but not in the Makefile:\n" + "\n".join(
        sorted(set(missing))
    )


# --- (c) repository paths -----------------------------------------------------------------------

# placeholders, globs, alternatives and asset keys (`dashboards/<name>`, `marts/…`) are not paths
NOT_A_PATH = re.compile(r"[<>*{}…|\s$]|\.\.\.")


def clean(path: str) -> str:
    path = path.split("::", 1)[0].split("#", 1)[0]
    return re.sub(r":\d+(-\d+)?$", "", path)  # src/x.py:12 -> src/x.py


def named_paths(page: Path) -> set[str]:
    """Repository-relative paths a page names: backticked ones under PATH_ROOTS, and relative links."""
    doc = text(page)
    found = set()
    for span in inline_spans(doc):
        for token in span.split():
            token = clean(token.strip("()[],;:'\""))
            if token.startswith(PATH_ROOTS) and not NOT_A_PATH.search(token):
                found.add(token)
    for target in LINK.findall(FENCE.sub("", doc)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s)://, mailto:, anchors within the page
        resolved = (page.parent / clean(target)).resolve()
        try:
            found.add(str(resolved.relative_to(ROOT)) + ("/" if target.endswith("/") else ""))
        except ValueError:
            found.add(clean(target))  # outside the repository: reported as missing
    return found


def hint(path: str) -> str:
    """Where a moved file went, to make reconciling the docs quick."""
    name = Path(path.rstrip("/")).name
    top = path.split("/", 1)[0]
    if not name or not (ROOT / top).is_dir():
        return ""
    moved = sorted(str(p.relative_to(ROOT)) for p in (ROOT / top).rglob(name) if "__pycache__" not in p.parts)
    return f" (now: {', '.join(moved[:3])})" if moved else ""


def test_every_repository_path_named_exists():
    missing = []
    for page in PAGES:
        for path in sorted(named_paths(page)):
            if not (ROOT / path).exists():
                missing.append(f"{rel(page)}: {path}{hint(path)}")
    assert not missing, f"{len(missing)} paths named in the docs do not exist:\n" + "\n".join(missing)


# --- (c2) anchors -------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", text(page)), re.M)
    return frozenset(slug(h) for h in headings)


def test_every_anchor_linked_exists():
    broken = []
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", text(page))):
            path, _, fragment = target.partition("#")
            if not fragment or re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            linked = (page.parent / path).resolve() if path else page
            if linked.suffix == ".md" and linked.is_file() and fragment not in anchors(linked):
                broken.append(f"{rel(page)}: {target}")
    assert not broken, "links to headings that do not exist:\n" + "\n".join(broken)


# --- (c3) the "where does X live" index ---------------------------------------------------------

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def module_file(dotted: str) -> tuple[Path, list[str]] | None:
    """``lakehouse.a.b.name`` -> (the longest module prefix's file, the attribute names after it)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT / "src" / Path(*parts[:i])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, parts[i:]
    return None


def index_rows() -> list[tuple[str, str]]:
    """(concern, code cell) of each row of architecture.md's "Where does X live" table."""
    doc = text(ARCHITECTURE)
    section = doc.split("## Where does X live", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| **")]
    return [(row[0].strip("| "), row[1]) for row in rows]


def test_where_does_x_live_names_what_exists():
    """Each span of the code column names a module (``lakehouse.x``), a file (``assets/x.py``) or a
    folder, or a name defined in the module or file named last before it."""
    rows = index_rows()
    assert len(rows) > 20, "the 'Where does X live' table of docs/architecture.md was not found"
    wrong = []
    for concern, cell in rows:
        current: Path | None = None
        for span in inline_spans(cell):
            if span.startswith("lakehouse."):
                found = module_file(span)
                if found is None:
                    wrong.append(f"{concern}: no module {span}")
                    continue
                current, names = found
            elif span.startswith(PATH_ROOTS):
                if NOT_A_PATH.search(span):
                    continue  # an asset key (`dashboards/<name>`), not a file
                path = ROOT / clean(span)
                if not path.exists():
                    wrong.append(f"{concern}: no file {span}")
                current, names = (path if path.is_file() else None), []
            elif IDENTIFIER.match(span) and current is not None:
                names = span.split(".")
            else:
                continue
            source = current.read_text(encoding="utf-8") if current else ""
            for name in names:
                if not re.search(rf"\b{re.escape(name)}\b", source):
                    wrong.append(
                        f"{concern}: `{name}` not in {current.relative_to(ROOT) if current else '?'}"
                    )
    assert not wrong, "the 'Where does X live' index points at things that are not there:\n" + "\n".join(
        wrong
    )


# --- (d) lakehouse commands ---------------------------------------------------------------------

COMMAND = re.compile(r"(?:^|[\s/`(])lakehouse[ \t]+([a-z][a-z-]*)(?:[ \t]+([a-z][a-z-]*))?", re.M)


def shown_commands() -> dict[tuple[str, ...], set[str]]:
    """(command[, subcommand]) -> pages showing it."""
    from typer.main import get_command

    from lakehouse.cli import app

    cli = get_command(app)
    shown: dict[tuple[str, ...], set[str]] = {}
    for page in PAGES:
        for snippet in code(text(page)):
            for first, second in COMMAND.findall(snippet):
                group = getattr(cli, "commands", {}).get(first)
                is_group = group is not None and hasattr(group, "commands")
                key = (first, second) if is_group and second else (first,)
                shown.setdefault(key, set()).add(rel(page))
    return shown


def test_every_lakehouse_command_shown_exists():
    from typer.testing import CliRunner

    from lakehouse.cli import app

    runner = CliRunner()
    shown = shown_commands()
    assert shown, "no `lakehouse <command>` found in the docs: the pattern is broken"
    failed = []
    for command, pages in sorted(shown.items()):
        result = runner.invoke(app, [*command, "--help"])
        if result.exit_code != 0:
            failed.append(
                f"lakehouse {' '.join(command)} (in {', '.join(sorted(pages))}): exit {result.exit_code}"
            )
    assert not failed, "commands shown in the docs that the CLI does not have:\n" + "\n".join(failed)


# --- (e) the README's numbers -------------------------------------------------------------------


@cache
def collected_tests() -> int:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    match = re.search(r"(\d+) tests? collected", out.stdout) or re.search(r"^(\d+) tests?", out.stdout, re.M)
    assert match, f"no test count in pytest --collect-only:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return int(match.group(1))


def test_readme_test_count_holds():
    stated = re.findall(r"(\d[\d,]*)\+?\s+tests", text(README))
    assert stated, "the README states no test count (e.g. '950+ tests'); if that is intended, drop this test"
    count = collected_tests()
    for number in stated:
        assert count >= int(number.replace(",", "")), (
            f"README.md says {number}+ tests, pytest collects {count}: lower the number in the README"
        )


def test_readme_uv_version_is_the_makefiles():
    stated = re.findall(r"uv (\d+\.\d+\.\d+)", text(README))
    pinned = re.search(r"^UV_VERSION\s*:=\s*(\S+)", text(ROOT / "Makefile"), re.M)
    assert pinned, "UV_VERSION not found in the Makefile"
    assert stated and set(stated) == {pinned.group(1)}, (
        f"README names uv {stated}, the Makefile pins {pinned.group(1)}"
    )


def test_readme_python_version_is_the_projects():
    stated = set(re.findall(r"Python (3\.\d+)", text(README)))
    required = re.search(r'^requires-python\s*=\s*"[=~>]*\s*(3\.\d+)', text(ROOT / "pyproject.toml"), re.M)
    assert required, "requires-python not found in pyproject.toml"
    assert stated == {required.group(1)}, (
        f"README names Python {stated}, pyproject.toml requires {required.group(1)}"
    )


def test_readme_demo_size_is_the_demos():
    stated = re.search(r"(\d[\d,]*)-event lake", text(README))
    assert stated, "the README no longer states the demo's lake size; if that is intended, drop this test"
    default = re.search(r'DEMO_EVENTS", "(\d+)"', text(ROOT / "orchestration" / "demo.py"))
    assert default, "DEMO_EVENTS default not found in orchestration/demo.py"
    assert int(stated.group(1).replace(",", "")) == int(default.group(1))


def test_readme_ui_address_is_the_makefiles():
    if "127.0.0.1:3000" in text(README):
        assert re.search(r"dagster dev .*-h 127\.0\.0\.1 -p 3000", text(ROOT / "Makefile"))


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_page_has_a_title(page: Path):
    assert text(page).startswith("# "), f"{rel(page)} should start with a '# ' title"
