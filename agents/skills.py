"""Skills: named packages of instructions (and the tools they need) an agent activates when relevant.

As in the seeds' ``SkillRegistry``: the agent's prompt lists the skills it
has (name and description); calling ``activate_skill(name)`` returns the
skill's instructions to the model and makes the skill's tools callable for
the rest of the reply.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SkillMetadata:
    name: str
    description: str


@dataclass(frozen=True)
class Skill:
    metadata: SkillMetadata
    instructions: str
    tools: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return self.metadata.name


class SkillRegistry:
    def __init__(self) -> None:
        self._skills: dict[str, Skill] = {}
        self._lock = threading.Lock()

    def register(self, skill: Skill) -> Skill:
        with self._lock:
            self._skills[skill.name] = skill
        return skill

    def unregister(self, name: str) -> None:
        with self._lock:
            self._skills.pop(name, None)

    def get(self, name: str) -> Skill | None:
        return self._skills.get(name)

    def names(self) -> list[str]:
        return sorted(self._skills)


registry = SkillRegistry()

registry.register(
    Skill(
        SkillMetadata("order_support", "Answer questions about an order: status, delivery, tracking."),
        instructions=(
            "To answer about an order: ask for the order number if you do not have it, call lookup_order, "
            "then tell the user the status and the expected delivery in one or two sentences."
        ),
        tools=("lookup_order",),
    )
)
