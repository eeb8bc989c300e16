"""Create (or repair) the console's "operator" and "viewer" groups and their permissions."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from rooms.console.actions import console_groups_ensure


class Command(BaseCommand):
    help = 'Create the "operator" (read, reply, act) and "viewer" (read only) groups of the operator console.'

    def handle(self, *args: Any, **options: Any) -> None:
        operator, viewer = console_groups_ensure()
        self.stdout.write(
            f"groups: {operator.name} ({operator.permissions.count()} permissions), "
            f"{viewer.name} ({viewer.permissions.count()} permissions)"
        )
