"""detectors/ imports nothing from alerts/ or monitor/ (it is a library; monitor/ wires it)."""

from __future__ import annotations

import ast
from pathlib import Path

import detectors

FORBIDDEN = ("alerts", "monitor", "tests", "benchmarks")


def test_detectors_import_no_sibling_package() -> None:
    root = Path(detectors.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
    assert len(list(root.rglob("*.py"))) >= 12  # the scan really saw the package
