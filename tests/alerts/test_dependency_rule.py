"""alerts/ imports nothing from detectors/ or monitor/ (the composition root wires them)."""

from __future__ import annotations

import ast
from pathlib import Path

import alerts

FORBIDDEN = ("detectors", "monitor", "tests")


def test_alerts_imports_no_sibling_package() -> None:
    root = Path(alerts.__file__).parent
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
    assert len(list(root.rglob("*.py"))) >= 15  # the scan really saw the package
