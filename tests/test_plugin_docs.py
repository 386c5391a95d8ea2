"""The plugin author's documentation keeps up with the hook contract.

For every hook spec in `medianest_server.hookspecs`:

- docs/plugins.md has a `### medianest_<hook>` section under "Hook reference", in the order of
  hookspecs.py, whose first code block defines `medianest_<hook>` with exactly the spec's
  parameter names (compared with `inspect.signature`);
- at least one implementation `def medianest_<hook>` / `async def medianest_<hook>` exists in a
  Python file under `tests/`, `examples/` or `plugins/*/`, other than this file. Finding the
  implementation is taken as the sign that a test exercises the hook: this check does not prove
  that a test imports or loads that module, only that someone wrote a plugin using the hook
  where tests live. A new hook fails here until both exist.

And every name in `medianest_server.plugin_api.__all__` can be imported.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medianest_server import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plugins.md"
REFERENCE_HEADING = "## Hook reference"


def hook_specs() -> list[Callable[..., Any]]:
    """The hook specs, in the order they are written in hookspecs.py."""
    marker = f"{hookspecs.PROJECT}_spec"  # the attribute pluggy's HookspecMarker sets
    specs = [
        value
        for name, value in vars(hookspecs).items()
        if name.startswith("medianest_") and inspect.isfunction(value) and hasattr(value, marker)
    ]
    return sorted(specs, key=lambda spec: spec.__code__.co_firstlineno)


SPECS = hook_specs()
HOOK_NAMES = [spec.__name__ for spec in SPECS]


def reference_sections() -> dict[str, str]:
    """`### medianest_<hook>` heading -> the text of its section, in document order."""
    text = DOC.read_text(encoding="utf-8")
    assert REFERENCE_HEADING in text, f"{DOC} has no '{REFERENCE_HEADING}' section"
    reference = text.split(REFERENCE_HEADING, 1)[1]
    reference = re.split(r"^## ", reference, maxsplit=1, flags=re.MULTILINE)[0]
    parts = re.split(r"^### +(\S+) *$", reference, flags=re.MULTILINE)
    return {parts[i].strip("`"): parts[i + 1] for i in range(1, len(parts), 2)}


def documented_parameters(section: str, hook: str) -> list[str]:
    """The parameter names of `def <hook>(...)` in the section's first code block."""
    match = re.search(r"^```[a-z]*\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert match, f"the {hook} section has no code block with its signature"
    tree = ast.parse(match.group(1))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == hook:
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            return [arg.arg for arg in every]
    raise AssertionError(f"the first code block of the {hook} section does not define {hook}")


def python_files_where_tests_live() -> list[Path]:
    this_file = Path(__file__).resolve()
    roots = [ROOT / "tests", ROOT / "examples", *sorted((ROOT / "plugins").glob("*/"))]
    files = [path for root in roots if root.is_dir() for path in sorted(root.rglob("*.py"))]
    return [path for path in files if path.resolve() != this_file]


def implementations(hook: str) -> list[Path]:
    pattern = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(hook)}\s*\(", re.MULTILINE)
    return [
        path
        for path in python_files_where_tests_live()
        if pattern.search(path.read_text(encoding="utf-8", errors="replace"))
    ]


def test_hookspecs_are_found() -> None:
    assert "medianest_routes" in HOOK_NAMES and len(HOOK_NAMES) == len(set(HOOK_NAMES))


def test_reference_headings_follow_hookspec_order() -> None:
    assert list(reference_sections()) == HOOK_NAMES


@pytest.mark.parametrize("spec", SPECS, ids=HOOK_NAMES)
def test_hook_is_documented_with_its_exact_parameters(spec: Callable[..., Any]) -> None:
    sections = reference_sections()
    hook = spec.__name__
    assert hook in sections, f"docs/plugins.md has no '### {hook}' section"
    expected = list(inspect.signature(spec).parameters)
    assert documented_parameters(sections[hook], hook) == expected


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_has_an_implementation_where_tests_live(hook: str) -> None:
    assert implementations(hook), (
        f"no `def {hook}` in a module under tests/, examples/ or plugins/*/: "
        "add a plugin that implements it and a test that loads that plugin"
    )


def test_every_public_name_imports() -> None:
    module = importlib.import_module("medianest_server.plugin_api")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert module.__all__ and missing == []


@pytest.mark.parametrize(
    "module",
    [
        "hookspecs.py",
        "plugins/loader.py",
        "plugins/types.py",
        "plugins/context.py",
        "plugins/runtime.py",
        "routing.py",
    ],
)
def test_the_contract_reads_bottom_up_without_the_facade(module: str) -> None:
    """plugin_api only re-exports; the hook specs and the loader stand on the modules below
    it, even for type checking, so the contract has no import loop."""
    tree = ast.parse((ROOT / "medianest_server" / module).read_text(encoding="utf-8"))
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name.endswith("plugin_api")], imported
