"""The core depends on no other app: ``channels_app``, ``agents`` and ``voice`` import ``rooms``, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

from django.test import SimpleTestCase

ROOMS = Path(__file__).resolve().parents[2] / "rooms"
OTHER_APPS = ("channels_app", "agents", "voice")


def _imported_modules(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


class CoreLayeringTests(SimpleTestCase):
    def test_rooms_imports_no_other_app(self) -> None:
        offending = [
            f"{path.relative_to(ROOMS.parent)}: {module}"
            for path in sorted(ROOMS.rglob("*.py"))
            for module in _imported_modules(path.read_text())
            if module.split(".")[0] in OTHER_APPS
        ]
        self.assertEqual(offending, [], "rooms reaches other apps through rooms.registries, never by import")

    def test_the_scan_sees_imports_inside_functions(self) -> None:
        source = "def f():\n    from agents import services\n    import channels_app.dispatch\n"
        self.assertEqual(_imported_modules(source), ["agents", "channels_app.dispatch"])
