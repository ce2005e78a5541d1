"""The skill interface and the registry of the skills a cell file's steps can name.

A skill is one object (`Skill`): its name (the step's `skill:`), the kind of tool the step's cobot needs, its
parameter dataclass, a cross-check of the parameters against the cell, and the planner that turns them into a
`SkillPlan`. Skills that handle parts say so (`carries_part`, `stacks`) and get the payload and pallet checks;
a skill whose parameters name several targets (a group of pallets) or many places (a pallet's pattern) says how
many, so validation plans every one of them. Everything else (validation, planning, the estimate, the resource
checks, the planner node) goes through the registry, so adding a skill is one module that registers it.

The loader in `core` checks that a step names a registered skill with the names the registry hands down
(`SKILLS.names()`): core never imports this layer.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

import numpy as np

from ..core.model import NAME_HINT, NAME_RE, CellConfig
from ..core.plan import PartView, SkillPlan
from .common import SkillContext, SkillParams

P = TypeVar("P", bound=SkillParams)
Problems = dict[str | tuple[str | int, ...], str]
"""Problems with a step's parameters: {parameter key or path under `params`: what is wrong}."""


class Skill(Protocol[P]):
    """What a skill provides. Subclass it to inherit the defaults of the optional members."""

    name: str
    """The name steps give in `skill:`."""
    tool: str
    """The kind of tool (`Tool.kind`) the step's cobot needs: 'gripper', 'torch'."""
    params: type[P]
    """The parameter dataclass (a `SkillParams`), validated by pydantic from the step's `params`."""
    carries_part: bool = False
    """The skill carries the job's part with its gripper (`grasp_height`, `to`): payload and grasp checks apply."""
    stacks: bool = False
    """The part is stacked on the pallet(s) `to` names: the pallet's box is the part's, its reach is checked."""
    loc_tags: frozenset[str] = frozenset()
    """Tags pydantic puts in error locations for the parameters' unions: they are not YAML keys."""

    @abstractmethod
    def check(self, cfg: CellConfig, params: P) -> Problems:
        """Cross-check validated parameters against the cell (station names and kinds, sizes); {} if fine."""
        ...

    @abstractmethod
    def plan(self, ctx: SkillContext, params: P, part: int, q: np.ndarray, state: PartView | None = None) -> SkillPlan:
        """The step's plan for one part, starting at joint positions q; `state` is the part's view of the skills'
        explicit state (None: plan from the part number alone). A target that cannot work raises ParamError."""
        ...

    def variants(self, cfg: CellConfig, params: P) -> list[P]:
        """The parameters once per target validation must plan separately (a group of pallets: one per pallet)."""
        return [params]

    def places(self, cfg: CellConfig, params: P) -> int:
        """How many parts validation plans to reach every place the step uses (a pallet: its places)."""
        return 1

    def explain(self, cfg: CellConfig, cobot: str, params: P, part: int, loc: tuple[str | int, ...]) -> str:
        """Text appended to a planning error of part `part` at parameter `loc` (e.g. how high a stack reaches)."""
        return ""


class SkillRegistry:
    """The skills steps can name, in registration order."""

    def __init__(self) -> None:
        self._skills: dict[str, Skill[Any]] = {}

    def register(self, skill: Skill[Any]) -> Skill[Any]:
        """Add a skill; ValueError if its name is taken or is not a valid name."""
        if not NAME_RE.match(skill.name):
            raise ValueError(f"skill name {skill.name!r}: expected {NAME_HINT}")
        if skill.name in self._skills:
            raise ValueError(f"a skill named '{skill.name}' is already registered")
        self._skills[skill.name] = skill
        return skill

    def unregister(self, name: str) -> None:
        """Remove a skill (KeyError if it is not registered)."""
        del self._skills[name]

    @contextlib.contextmanager
    def registered(self, skill: Skill[Any]) -> Iterator[Skill[Any]]:
        """The skill registered for the duration of a `with` block (tests, tools)."""
        self.register(skill)
        try:
            yield skill
        finally:
            self.unregister(skill.name)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._skills)

    def __getitem__(self, name: str) -> Skill[Any]:
        try:
            return self._skills[name]
        except KeyError:
            raise KeyError(f"unknown skill '{name}': expected one of {', '.join(self._skills)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._skills

    def __iter__(self) -> Iterator[str]:
        return iter(self._skills)

    def __len__(self) -> int:
        return len(self._skills)


SKILLS = SkillRegistry()
"""Every skill of this process: the built-in ones are registered by `cobot_cell.skills`."""
