"""Plant file (YAML): the cells of a plant under one supervisor, one OPC UA server and one MQTT publisher.

    plant:
      site: acme                 # MQTT topic tree <site>/<area>/<cell>/...
      area: hall2
      db: production.db          # the supervisor's production log (relative to this file)
      opcua: opc.tcp://127.0.0.1:4840/cobot_cell/   # optional
      mqtt: mqtt://127.0.0.1:1883                    # optional
      users: users.json          # optional, the plant servers' user file
    cells:
      - file: cells/bracket.yaml # its cell.name is the cell's namespace: unique in the plant
        host: local              # local: started by `cobot-cell plant`; remote: runs on its own computer
      - file: cells/frame.yaml
        host: remote

Every error names the place (`cells[1].file`) and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
HOSTS = ("local", "remote")
_PLANT_KEYS = {"site", "area", "db", "opcua", "mqtt", "users"}
_CELL_KEYS = {"file", "host", "name"}


@dataclass(frozen=True)
class PlantCell:
    """One cell of the plant: its name (namespace), cell file and where it runs."""

    name: str
    file: Path
    local: bool
    jobs: tuple[str, ...]
    cobot_namespaces: tuple[str, ...]


@dataclass(frozen=True)
class PlantConfig:
    """A plant: cells and the shared services."""

    path: Path
    site: str
    area: str
    db: Path
    opcua: str
    mqtt: str
    users: str
    cells: tuple[PlantCell, ...]

    @property
    def prefix(self) -> str:
        """The MQTT topic prefix <site>/<area>."""
        return f"{self.site}/{self.area}"


class PlantFileError(ValueError):
    """A plant file that cannot be used; the message names the file, the place and the problem."""


def _read_yaml(path: Path, where: str) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PlantFileError(f"{where}: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PlantFileError(f"{where}: {path} is not YAML: {exc}") from None


def _cell_facts(path: Path, where: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(cell name, job names, absolute cobot namespaces) of a cell file, read without the full model."""
    data: dict = _read_yaml(path, where)  # type: ignore[assignment]
    try:
        name = data["cell"]["name"]
        jobs = tuple(data["jobs"])
        cobots = data["cobots"]
        spaces = tuple("/" + str(c.get("namespace") or n).lstrip("/") for n, c in cobots.items())
    except (TypeError, KeyError, AttributeError):
        raise PlantFileError(f"{where}: {path} is not a cell file (cell.name, cobots and jobs expected)") from None
    return str(name), jobs, spaces


def load_plant(path: str | Path) -> PlantConfig:
    """Read and check a plant file; PlantFileError naming the problem."""
    path = Path(path)
    data = _read_yaml(path, "plant file")
    if not isinstance(data, dict) or set(data) - {"plant", "cells"} or "cells" not in data:
        raise PlantFileError(f"{path}: expected the keys 'plant' and 'cells'")
    plant = data.get("plant") or {}
    if not isinstance(plant, dict) or set(plant) - _PLANT_KEYS:
        unknown = sorted(set(plant) - _PLANT_KEYS) if isinstance(plant, dict) else []
        raise PlantFileError(f"{path}: plant: unknown keys {unknown} (expected {', '.join(sorted(_PLANT_KEYS))})")
    base = path.parent
    site, area = str(plant.get("site", "plant")), str(plant.get("area", "area"))
    for key, value in (("site", site), ("area", area)):
        if not NAME_RE.fullmatch(value):
            raise PlantFileError(f"{path}: plant.{key}: expected a name of letters, digits and _, got {value!r}")
    cells_data = data["cells"]
    if not isinstance(cells_data, list) or not cells_data:
        raise PlantFileError(f"{path}: cells: expected a list of at least one cell")
    cells: list[PlantCell] = []
    owner: dict[str, str] = {}
    for i, c in enumerate(cells_data):
        where = f"{path}: cells[{i}]"
        if not isinstance(c, dict) or "file" not in c or set(c) - _CELL_KEYS:
            raise PlantFileError(f"{where}: expected 'file' and optionally 'host' ({' or '.join(HOSTS)})")
        host = str(c.get("host", "local"))
        if host not in HOSTS:
            raise PlantFileError(f"{where}.host: expected {' or '.join(HOSTS)}, got {host!r}")
        file = (base / str(c["file"])).resolve()
        name, jobs, spaces = _cell_facts(file, f"{where}.file")
        if "name" in c and c["name"] != name:
            raise PlantFileError(f"{where}.name: {c['name']!r} differs from the cell file's cell.name {name!r}")
        for ns in ("/" + name, *spaces):
            if ns in owner:
                raise PlantFileError(
                    f"{where}.file: namespace {ns} of cell '{name}' is already used by "
                    f"{owner[ns]} (give each cell a unique cell.name and cobot namespaces)"
                )
            owner[ns] = f"cell '{name}'"
        cells.append(PlantCell(name, file, host == "local", jobs, spaces))
    return PlantConfig(
        path=path,
        site=site,
        area=area,
        db=(base / str(plant.get("db", "production.db"))).resolve(),
        opcua=str(plant.get("opcua") or ""),
        mqtt=str(plant.get("mqtt") or ""),
        users=str((base / plant["users"]).resolve()) if plant.get("users") else "",
        cells=tuple(cells),
    )
