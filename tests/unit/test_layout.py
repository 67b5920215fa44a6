"""The product apart from its test fleet: no module of the product imports the
sandbox (camera-rollout-sandbox, ``rollout_sandbox``), or names it at all."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The product: the package, its deploy files and tasks, the defaults, the example
#: inventory and the host checks `rollout verify` runs. inventories/sandbox.py and
#: group_data/sandbox*.py belong to the sandbox's environment, not to the product.
PRODUCT = sorted(
    [*ROOT.glob("rollout/**/*.py"), *ROOT.glob("tasks/*.py"), *ROOT.glob("tests/hosts/*.py"),
     ROOT / "deploy.py", ROOT / "group_data" / "all.py", ROOT / "inventories" / "prod.py"]
)
SANDBOX = "rollout_sandbox"


def imported_modules(tree: ast.AST) -> list[str]:
    """Every module an ``import`` or ``from ... import`` statement names, at any depth."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_the_product_files_are_found():
    names = {str(p.relative_to(ROOT)) for p in PRODUCT}
    assert {"rollout/cli.py", "rollout/checks.py", "deploy.py", "tasks/stage.py"} <= names
    assert not {"rollout/sandbox.py", "rollout/lb.py", "rollout/loadgen.py", "tasks/app.py"} & names


def test_no_product_module_imports_the_sandbox():
    offenders = []
    for path in PRODUCT:
        tree = ast.parse(path.read_text(), filename=str(path))
        for module in imported_modules(tree):
            if module.split(".")[0] == SANDBOX:
                offenders.append(f"{path.relative_to(ROOT)}: import {module}")
    assert offenders == []


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes (prose may mention the sandbox)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_no_product_module_names_the_sandbox():
    """Nor behind importlib, a subprocess (``-m rollout_sandbox``) or a path."""
    offenders = []
    for path in PRODUCT:
        tree = ast.parse(path.read_text(), filename=str(path))
        prose = docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and SANDBOX in node.value
                    and id(node) not in prose):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
    assert offenders == []


def test_the_scan_sees_every_import():
    tree = ast.parse("def f():\n    from rollout_sandbox.fleet import up\nimport rollout_sandbox.lb as lb\n")
    assert sorted(imported_modules(tree)) == ["rollout_sandbox.fleet", "rollout_sandbox.lb"]
