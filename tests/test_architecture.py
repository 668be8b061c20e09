"""The package's imports run one way, along the data flow: a module imports only from its
own package or from a layer below it (docs/architecture.md draws the layers)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_llmeval"

# Bottom first. Packages of one layer do not import each other; the top layer is the
# surface pytest and the command line call, and may import anything below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("support",),
    ("options", "models", "suite"),
    ("engine",),
    ("scoring",),
    ("results",),
    ("report", "langsmith"),
    ("run", "items", "python_api", "plugin", "cli", "agreement", "locations", "__init__"),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
TOP = len(LAYERS) - 1


def unit_of(module: str) -> str:
    """The package (or top-level module) a dotted name under pytest_llmeval belongs to."""
    parts = module.split(".")[1:]
    return parts[0] if parts else "__init__"


def arrows_back(package: Path) -> list[str]:
    """Every import in ``package`` that runs back up, or sideways within a layer."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        here = unit_of(name.removesuffix(".__init__"))
        if here not in RANK:
            problems.append(f"{name}: {here} is in no layer of LAYERS")
            continue
        for line, target in imported(package, ast.parse(path.read_text(encoding="utf-8"))):
            there = unit_of(target)
            if there == here:
                continue
            if there not in RANK:
                problems.append(f"{name}:{line} imports {target}, which is in no layer")
            elif RANK[there] > RANK[here] or (RANK[there] == RANK[here] != TOP):
                problems.append(f"{name}:{line} imports {target}: {there} is not below {here}")
    return problems


def imported(package: Path, tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import of the package, function-level ones included; a name
    imported from a package is the submodule of that name when there is one."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith(package.name)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package.name):
            assert node.level == 0, "relative imports hide the direction: import absolutely"
            module = node.module or ""
            for alias in node.names:
                sub = package.joinpath(*module.split(".")[1:], alias.name)
                is_module = sub.with_suffix(".py").is_file() or sub.is_dir()
                found.append((node.lineno, f"{module}.{alias.name}" if is_module else module))
    return found


def test_imports_run_one_way() -> None:
    assert arrows_back(PACKAGE) == []


def test_the_check_sees_arrows_back(tmp_path: Path) -> None:
    """A lower layer importing a higher one (at the top or inside a function), a sibling of
    its layer, or a module in no layer, is caught."""
    package = tmp_path / "pytest_llmeval"
    files = {
        "report/view.py": "",
        "langsmith/upload.py": "from pytest_llmeval.report import view\n",
        "results/gate.py": "def f():\n    from pytest_llmeval.report.view import pct\n",
        "support/text.py": "import pytest_llmeval.engine.client\n",
        "engine/client.py": "from pytest_llmeval.support.text import shorten\n",
        "extras/new.py": "",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    assert arrows_back(package) == [
        "pytest_llmeval.extras.new: extras is in no layer of LAYERS",
        "pytest_llmeval.langsmith.upload:1 imports pytest_llmeval.report.view: report is not "
        "below langsmith",
        "pytest_llmeval.results.gate:2 imports pytest_llmeval.report.view: report is not "
        "below results",
        "pytest_llmeval.support.text:1 imports pytest_llmeval.engine.client: engine is not "
        "below support",
    ]


def test_the_plugin_imports_no_library_only_some_runs_need() -> None:
    """The plugin is imported by every pytest run in a project that has it installed: the
    libraries of one feature each (fuzzy_list's matching, the file schemas, round-trip YAML,
    the price list, the diff that explains a miss and the numpy it brings) are imported
    when first needed, not at start-up."""
    code = (
        "import sys, pytest_llmeval.plugin; "
        "print(sorted(m for m in ('scipy', 'jsonschema', 'ruamel', 'genai_prices', 'deepdiff', "
        "'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
