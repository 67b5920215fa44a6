"""The sandbox's own house rules: it uses the product only through public names,
and its modules import each other without a cycle (the load balancer and the
fleet share process helpers instead of importing each other)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rollout_sandbox"
MODULES = {path.stem: path for path in sorted(PACKAGE.glob("*.py"))}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every absolute import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_the_product_is_used_through_public_names_only():
    private = []
    for name, path in MODULES.items():
        for module, names in _imports(path):
            if module.split(".")[0] != "rollout":
                continue
            parts = module.split(".") + names
            private += [f"{name}.py: from {module} import {n}" for n in parts if n.startswith("_")]
    assert private == []


def _sandbox_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for module, names in _imports(path):
            parts = module.split(".")
            if parts[0] != "rollout_sandbox":
                continue
            if len(parts) > 1:
                targets.add(parts[1])
            else:  # from rollout_sandbox import lb
                targets |= {n for n in names if n in MODULES}
        graph[name] = targets - {name}
    return graph


def test_no_import_cycle_inside_the_sandbox():
    graph = _sandbox_graph()
    visiting, done, cycles = [], set(), []

    def visit(node: str) -> None:
        if node in visiting:
            cycles.append(visiting[visiting.index(node):] + [node])
            return
        if node in done:
            return
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            visit(target)
        visiting.pop()
        done.add(node)

    for node in graph:
        visit(node)
    assert cycles == []


def test_the_load_balancer_stands_without_the_fleet():
    graph = _sandbox_graph()
    assert "fleet" in graph["cli"] and "lb" in graph["fleet"]
    assert graph["lb"] == {"procs", "settings"}
