"""Validation of the cell file's dataclasses by pydantic, which is imported only when something is validated.

The cell file's types (`core.config`, `core.faults`, the skills' parameters) are frozen stdlib dataclasses that
say how pydantic checks them: `__pydantic_config__` (a plain dict, see `Checked`), annotated_types
constraints, field metadata (`alias`, `description`), and the `After` / `Plain` / `Schema` markers below.
A process that only uses validated data (the task_planner) never imports pydantic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Annotated, Any, TypeVar, cast

from annotated_types import Gt

T = TypeVar("T")

PositiveFloat = Annotated[float, Gt(0)]
PositiveInt = Annotated[int, Gt(0)]


class Checked:
    """Base of the cell file's dataclasses: pydantic rejects keys that are not fields."""

    __pydantic_config__ = {"extra": "forbid", "allow_inf_nan": False}


@functools.cache
def _adapter(cls: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def validate(cls: type[T], data: Any) -> T:
    """`data` (plain YAML values) checked and converted into a `cls`; pydantic.ValidationError lists the problems."""
    result: T = _adapter(cast(Hashable, cls)).validate_python(data)
    return result


class After:
    """Annotated marker: `check(value)` runs after the field's own checks and returns the value; a ValueError it
    raises is reported at the field. With `fields=True` it is `check(value, fields)`, `fields` holding the fields
    declared before this one that are valid."""

    def __init__(self, check: Callable[..., Any], fields: bool = False):
        self.check = check
        self.fields = fields

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        if self.fields:
            return core_schema.with_info_after_validator_function(
                lambda v, info: self.check(v, info.data), handler(source)
            )
        return core_schema.no_info_after_validator_function(self.check, handler(source))


class Plain:
    """Annotated marker: `convert(value)` alone validates the field (the annotation documents the result); a
    ValueError is reported at the field, a ValidationError of a nested `validate` at the nested keys."""

    def __init__(self, convert: Callable[[Any], Any]):
        self.convert = convert

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(self.convert)


class Schema:
    """Annotated marker: validate the field as the type `build()` returns, for types that need pydantic's own
    classes (built on first validation, so defining the dataclass imports no pydantic)."""

    def __init__(self, build: Callable[[], Any]):
        self.build = build

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return handler.generate_schema(self.build())
