"""The wire codec: what crosses ROS topics as diagnostic_msgs key/values (cycle reports, fault updates, cell
status), with a format version, so that every writer and reader of them uses one encoding.

Compatibility (a plant may run cells and supervisors of different releases): within one format version keys are
only added. A reader ignores keys it does not know, and a key a writer of an older release did not send takes
its field's default; a field without a default is required. An incompatible change bumps `WIRE_VERSION`, and a
reader refuses a message of a version it does not know, naming both. Messages without the version key are
version 1 (they predate it).

Cycle-report keys are derived from the `CycleReport` and `StepTiming` dataclasses, so a field added to them
crosses the wire without an edit here (str, int, float, bool, str enums and optionals of those).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from .faults import Fault
from .reports import STATUSES, CycleReport, StepTiming

if TYPE_CHECKING:
    from .cell import CellStatus

WIRE_VERSION = 1
VERSION_KEY = "wire"
SUPPORTED = frozenset({1})

Pairs = Iterable[tuple[str, str]]


def _version(kv: Mapping[str, str], what: str) -> int:
    raw = kv.get(VERSION_KEY, "1")
    try:
        version = int(raw)
    except ValueError:
        raise ValueError(f"{what}: key '{VERSION_KEY}' is not a whole number: {raw!r}") from None
    if version not in SUPPORTED:
        raise ValueError(
            f"{what}: wire format version {version} not supported (this reader: "
            f"{', '.join(str(v) for v in sorted(SUPPORTED))})"
        )
    return version


def _text(value: object) -> str:
    """One field value as wire text: floats exactly (repr), None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _parse(raw: str, kind: Any, what: str, key: str) -> Any:
    """Wire text back into a field of type `kind`; ValueError naming the key."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (Union, types.UnionType) and type(None) in args:
        if raw == "":
            return None
        (kind,) = [a for a in args if a is not type(None)]
    if kind is str:
        return raw
    if kind is bool:
        if raw not in ("true", "false"):
            raise ValueError(f"{what}: key '{key}' must be true or false, got {raw!r}")
        return raw == "true"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(
                f"{what}: key '{key}' must be one of {', '.join(str(m.value) for m in kind)}, got {raw!r}"
            ) from None
    try:
        return kind(raw)  # a non-finite float passes: the reader decides (the production log refuses it)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise ValueError(f"{what}: key '{key}' is not {noun}: {raw!r}") from None


_FIELDS: dict[type, tuple[tuple[dataclasses.Field[Any], Any], ...]] = {}


def _fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    """The dataclass fields of `cls` with their resolved types (worked out once per class)."""
    known = _FIELDS.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = _FIELDS[cls] = tuple((f, hints[f.name]) for f in dataclasses.fields(cls))
    return known


def _encode(obj: object, prefix: str = "", skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    return [(prefix + f.name, _text(getattr(obj, f.name))) for f, _ in _fields(type(obj)) if f.name not in skip]


def _decode(
    cls: type, get: Callable[[str], str | None], what: str, prefix: str = "", given: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments of `cls` from wire keys (`given` ones are filled in already)."""
    out: dict[str, Any] = dict(given or {})
    for f, kind in _fields(cls):
        if f.name in out:
            continue
        raw = get(prefix + f.name)
        if raw is None:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{what}: missing key '{prefix + f.name}'")
            continue
        out[f.name] = _parse(raw, kind, what, prefix + f.name)
    return out


# ------------------------------------------------------------------------------------------ cycle reports
def encode_cycle(report: CycleReport) -> list[tuple[str, str]]:
    """A cycle report as key/values: its fields, the derived cycle_time, the step names and each step's fields."""
    kv = [
        (VERSION_KEY, str(WIRE_VERSION)),
        *_encode(report, skip=("steps",)),
        ("cycle_time", repr(report.cycle_time)),
        ("steps", ",".join(s.step for s in report.steps)),
    ]
    for s in report.steps:
        kv += _encode(s, f"step.{s.step}.", skip=("step",))
    return kv


def decode_cycle(pairs: Pairs | Mapping[str, str], cls: type[CycleReport] = CycleReport) -> CycleReport:
    """A cycle report (of `cls`, CycleReport or a subclass) from key/values; ValueError naming a missing or bad
    key."""
    kv = dict(pairs.items() if isinstance(pairs, Mapping) else pairs)
    what = "cycle report"
    _version(kv, what)
    names = [n for n in kv.get("steps", "").split(",") if n]
    if "steps" not in kv:
        raise ValueError(f"{what}: missing key 'steps'")
    steps = tuple(StepTiming(**_decode(StepTiming, kv.get, what, f"step.{n}.", {"step": n})) for n in names)
    report = cls(**_decode(cls, kv.get, what, given={"steps": steps}))
    if report.status not in STATUSES:
        raise ValueError(f"{what}: key 'status' must be one of {', '.join(STATUSES)}, got {report.status!r}")
    return report


# ------------------------------------------------------------------------------------------ faults
@dataclass(frozen=True)
class FaultUpdate:
    """One fault life-cycle update on the wire (times in the cell's clock seconds): raised, acknowledged,
    cleared. `fault_key` identifies the fault across updates and restarts; `severity` is ERROR or WARN."""

    cell: str
    fault_key: str
    message: str
    raised: float
    code: str = ""
    source: str = ""
    severity: str = "ERROR"
    id: int = 0
    cobot: str = ""
    step: str = ""
    skill: str = ""
    acknowledged: float | None = None
    cleared: float | None = None

    @property
    def active(self) -> bool:
        """Not cleared yet."""
        return self.cleared is None

    @property
    def level(self) -> str:
        """The diagnostic level of this update: its severity while active and not acknowledged, WARN once
        acknowledged, OK once cleared."""
        if not self.active:
            return "OK"
        return "WARN" if self.acknowledged is not None else self.severity

    @classmethod
    def of(cls, fault: Fault, cell: str, fault_key: str) -> FaultUpdate:
        """The update that says where a core fault is now."""
        return cls(
            cell=cell,
            fault_key=fault_key,
            code=fault.code.value,
            message=fault.message,
            raised=fault.raised,
            source=fault.source,
            severity=fault.severity,
            id=fault.id,
            cobot=fault.cobot,
            step=fault.step,
            skill=fault.skill,
            acknowledged=fault.acknowledged,
            cleared=fault.cleared,
        )


def encode_fault(update: FaultUpdate) -> list[tuple[str, str]]:
    """A fault update as key/values (the message goes in the status message, not in a key); `time` repeats
    `raised` for readers of the first releases."""
    kv = [(VERSION_KEY, str(WIRE_VERSION)), *_encode(update, skip=("message",)), ("time", repr(update.raised))]
    return kv if update.fault_key else [(k, v) for k, v in kv if k != "fault_key"]


def decode_fault(
    pairs: Pairs | Mapping[str, str], message: str, cell: str = "", source: str = ""
) -> FaultUpdate | None:
    """The fault update in a status's key/values (message from the status; cell and source as fallbacks when
    the keys are empty); None when it carries no fault_key (not a fault update); ValueError if malformed."""
    kv = dict(pairs.items() if isinstance(pairs, Mapping) else pairs)
    key = kv.get("fault_key")
    if not key:
        return None
    what = f"fault {key}"
    _version(kv, what)
    if not kv.get("raised"):
        kv["raised"] = kv.get("time", "")
    if not kv["raised"]:
        raise ValueError(f"{what}: missing key 'raised'")
    given: dict[str, Any] = {"message": message}
    if not kv.get("cell"):
        given["cell"] = cell
    if "source" not in kv:
        given["source"] = source
    return FaultUpdate(**_decode(FaultUpdate, kv.get, what, given=given))


# ------------------------------------------------------------------------------------------ cell status
def encode_status(s: CellStatus) -> list[tuple[str, str]]:
    """The cell's status as key/values (the planner's `status` topic)."""
    f = s.fault
    return [
        (VERSION_KEY, str(WIRE_VERSION)),
        ("state", s.state.value),
        ("job", s.job),
        ("parts", str(s.parts_target)),
        ("parts_done", str(s.parts_done)),
        ("part", "" if s.part is None else str(s.part)),
        ("run_id", s.run_id),
        ("last_cycle_time", "" if s.last_cycle_time is None else f"{s.last_cycle_time:.3f}"),
        ("fault", "" if f is None else f"{f.source}: {f.message}"),
        ("fault_id", "" if f is None else str(f.id)),
        ("fault_code", "" if f is None else f.code.value),
        ("fault_acknowledged", "" if f is None else str(f.acknowledged is not None).lower()),
        ("scrap", str(s.scrap)),
        ("resume", s.resume),
        ("running", ";".join(f"{cobot}:{step}@{start!r}" for cobot, step, start in s.running)),
        ("parts_in_flight", ",".join(str(p) for p in s.parts)),
        ("waiting", ";".join(f"{cobot}:{part}:{step}:{res}" for cobot, part, step, res in s.waiting)),
        ("bound", "" if s.bound is None else f"{s.bound:.3f}"),
        # waits on the outfeed (every pallet full) / on the infeed (its sensor shows no part for the next part)
        ("blocked", str(s.blocked).lower()),
        ("starved", str(s.starved).lower()),
    ]


def decode_status(pairs: Pairs | Mapping[str, str]) -> dict[str, str]:
    """The cell's status key/values as a dict (a display reads the keys it shows); ValueError for a format
    version this reader does not know."""
    kv = dict(pairs.items() if isinstance(pairs, Mapping) else pairs)
    _version(kv, "cell status")
    return kv
