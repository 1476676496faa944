"""The import graph of ``service/``, read from the source: every import statement counts, those under
``if TYPE_CHECKING:`` and inside functions included, since an import hidden there is still a dependency
(and an annotation-only circle turns into a real one the day someone needs the name at run time).

No circle anywhere; and the directory's vocabulary (the protocol, entries, errors, the thread bridge,
the config dataclasses) reaches only the standard library, so readers of an answer need no ldap3."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parent.parent / "service"

#: Modules of the directory package that must not reach ldap3 (nor anything outside the standard
#: library), directly or through the service modules they import.
STANDARD_LIBRARY_ONLY = frozenset(
    {
        "service.directory.protocol",
        "service.directory.entry",
        "service.directory.errors",
        "service.directory.observer",
        "service.directory.config",
        "service.directory.worker",
    }
)


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module and package of ``service``."""
    modules = {}
    for path in SERVICE.rglob("*.py"):
        parts = path.relative_to(SERVICE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imported(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """The service modules ``name`` imports and the top-level names of everything else it imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # ``from service import mapping`` imports the module service.mapping
            targets += [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    internal, external = set(), set()
    for target in targets:
        if target.split(".")[0] != "service":
            external.add(target.split(".")[0])
            continue
        while target not in modules:  # ``from service.directory.client import Directory``
            target = target.rpartition(".")[0]
        if target != name:
            internal.add(target)
    return internal, external


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    internal, external = {}, {}
    for name, path in modules.items():
        internal[name], external[name] = _imported(name, path, modules)
    return internal, external


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as the path that closes it), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph[module]):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module)
        if found:
            return found
    return None


def test_no_import_circle_in_service() -> None:
    internal, _ = _graph()
    assert len(internal) > 40  # the walk really found the service's modules
    assert _circle(internal) is None


def test_the_circle_finder_sees_annotation_only_imports() -> None:
    """The finder itself: a circle closed only under TYPE_CHECKING is still one."""
    assert _circle({"a": {"b"}, "b": {"a"}, "c": set()}) == ["a", "b", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None


def test_the_directory_vocabulary_needs_only_the_standard_library() -> None:
    internal, external = _graph()
    for module in sorted(STANDARD_LIBRARY_ONLY):
        reached, todo = set(), [module]
        while todo:
            current = todo.pop()
            if current not in reached:
                reached.add(current)
                todo += internal[current]
        assert reached <= STANDARD_LIBRARY_ONLY, (module, sorted(reached - STANDARD_LIBRARY_ONLY))
        outside = {name for current in reached for name in external[current]} - sys.stdlib_module_names
        assert not outside, (module, sorted(outside))
