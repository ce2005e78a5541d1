"""The cell file's names in one place, for code written before the split: the data model is `core.model`, the
pallet spec `core.pallet_spec`, reading and checking a file `core.loader`, and walks of a job's step graph
`core.dag`. New code imports from those modules.
"""

from __future__ import annotations

from .dag import find_cycle, occupancy_windows, routes_of, station_group, topological_order
from .loader import (
    CellFileError,
    ConfigIssue,
    LineIndex,
    check_references,
    format_path,
    issues_from_pydantic,
    load_cell_file,
    parse_cell,
    read_cell_text,
)
from .model import (
    ARM_DOF,
    NAME_HINT,
    NAME_RE,
    RELATIVE_NAME_HINT,
    RELATIVE_NAME_RE,
    ArmModelName,
    Box,
    CellConfig,
    CellInfo,
    Cobot,
    Job,
    Limits,
    PartType,
    Pose,
    Station,
    Step,
    Tool,
    ToolShape,
    Zone,
)
from .pallet_spec import (
    CUSTOM_PALLET_HEIGHT,
    STANDARD_PALLETS,
    ApproachSide,
    BoxSize,
    PalletSize,
    PalletSpec,
    PatternName,
    pallet_dims,
)

_LineIndex = LineIndex
_issues_from_pydantic = issues_from_pydantic

__all__ = [
    "ARM_DOF",
    "ArmModelName",
    "NAME_RE",
    "NAME_HINT",
    "RELATIVE_NAME_RE",
    "RELATIVE_NAME_HINT",
    "Pose",
    "Limits",
    "ToolShape",
    "Tool",
    "PartType",
    "Cobot",
    "Station",
    "Box",
    "Zone",
    "Step",
    "Job",
    "CellInfo",
    "CellConfig",
    "STANDARD_PALLETS",
    "CUSTOM_PALLET_HEIGHT",
    "PatternName",
    "ApproachSide",
    "PalletSize",
    "BoxSize",
    "PalletSpec",
    "pallet_dims",
    "ConfigIssue",
    "CellFileError",
    "LineIndex",
    "format_path",
    "issues_from_pydantic",
    "parse_cell",
    "read_cell_text",
    "load_cell_file",
    "check_references",
    "find_cycle",
    "topological_order",
    "station_group",
    "routes_of",
    "occupancy_windows",
]
