"""Plant file: cells, hosts and shared services; every error names the place and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from cobot_cell.plant.config import PlantFileError, load_plant
from cobot_cell.ros.bringup import BringupOptions, plant_node_specs

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo_cell.yaml"


def write(tmp: Path, plant: str, second: str | None = None) -> Path:
    (tmp / "a.yaml").write_text(DEMO.read_text())
    text = DEMO.read_text().replace("  name: demo\n", "  name: cell_b\n")
    (tmp / "b.yaml").write_text(
        second
        if second is not None
        else text.replace(
            "  picker:\n    model: ur5e\n", "  picker:\n    model: ur5e\n    namespace: cell_b/picker\n"
        ).replace("  welder:\n    model: ur5e\n", "  welder:\n    model: ur5e\n    namespace: /cell_b/welder\n")
    )
    (tmp / "plant.yaml").write_text(plant)
    return tmp / "plant.yaml"


def test_a_plant_of_a_local_and_a_remote_cell(tmp_path) -> None:
    path = write(
        tmp_path,
        "plant: {site: acme, area: hall2, mqtt: 'mqtt://127.0.0.1:1883'}\n"
        "cells:\n  - {file: a.yaml}\n  - {file: b.yaml, host: remote}\n",
    )
    plant = load_plant(path)
    assert [(c.name, c.local, c.jobs) for c in plant.cells] == [
        ("demo", True, ("bracket",)),
        ("cell_b", False, ("bracket",)),
    ]
    assert plant.cells[1].cobot_namespaces == ("/cell_b/picker", "/cell_b/welder")
    assert plant.prefix == "acme/hall2" and plant.db == tmp_path / "production.db"
    specs = plant_node_specs(plant, BringupOptions(), tmp_path)
    # only the local cell's nodes run here; the supervisor and MQTT publisher take both cells
    assert [s.fqn for s in specs] == [
        "/picker/sim_cobot",
        "/welder/sim_cobot",
        "/demo/task_planner",
        "/supervisor",
        "/mqtt_bridge",
    ]
    assert specs[3].parameters["cells"] == ["demo", "cell_b"] and specs[4].parameters["prefix"] == "acme/hall2"


@pytest.mark.parametrize(
    ("plant", "second", "message"),
    [
        ("cells: []\n", None, "cells: expected a list of at least one cell"),
        ("cells:\n  - {file: a.yaml, host: cloud}\n", None, r"cells\[0\].host: expected local or remote, got 'cloud'"),
        ("cells:\n  - {file: missing.yaml}\n", None, r"cells\[0\].file: cannot read .*missing.yaml"),
        (
            "cells:\n  - {file: a.yaml}\n  - {file: b.yaml}\n",
            DEMO.read_text(),
            r"cells\[1\].file: namespace /demo of cell 'demo' is already used by cell 'demo'",
        ),
        (
            "cells:\n  - {file: a.yaml}\n  - {file: b.yaml}\n",
            DEMO.read_text().replace("name: demo", "name: b2"),
            r"cells\[1\].file: namespace /picker of cell 'b2' is already used by cell 'demo'",
        ),
        ("plant: {site: 'a b'}\ncells:\n  - {file: a.yaml}\n", None, "plant.site: expected a name"),
        ("plant: {colour: red}\ncells:\n  - {file: a.yaml}\n", None, r"plant: unknown keys \['colour'\]"),
        ("cells:\n  - {file: a.yaml, name: other}\n", None, r"cells\[0\].name: 'other' differs"),
        ("cells: {a: 1}\n", None, "cells: expected a list"),
        ("cells:\n  - {file: b.yaml}\n", "just: text\n", r"cells\[0\].file: .*b.yaml is not a cell file"),
    ],
)
def test_bad_plant_files_name_the_problem(tmp_path, plant, second, message) -> None:
    path = write(tmp_path, plant, second)
    with pytest.raises(PlantFileError, match=message):
        load_plant(path)


def test_up_options_start_the_plant_bridges() -> None:
    from cobot_cell.cli import _plant_options, build_parser
    from cobot_cell.plant import DEFAULT_OPCUA_ENDPOINT
    from cobot_cell.ros.bringup import node_specs
    from cobot_cell.skills import load_cell

    args = build_parser().parse_args(
        ["up", str(DEMO), "--opcua", "--mqtt", "mqtt://127.0.0.1:1884", "--mqtt-prefix", "acme/hall2", "--allow-none"]
    )
    specs = node_specs(load_cell(DEMO), DEMO, BringupOptions(**_plant_options(args)))
    bridges = {s.executable: s.parameters for s in specs if s.executable.endswith("_bridge")}
    assert bridges["opcua_bridge"]["endpoint"] == DEFAULT_OPCUA_ENDPOINT == "opc.tcp://127.0.0.1:4840/cobot_cell/"
    assert bridges["opcua_bridge"]["allow_none"] is True and bridges["opcua_bridge"]["cell_files"] == [str(DEMO)]
    assert (bridges["mqtt_bridge"]["broker"], bridges["mqtt_bridge"]["prefix"]) == (
        "mqtt://127.0.0.1:1884",
        "acme/hall2",
    )
    plain = build_parser().parse_args(["up", str(DEMO)])
    assert not [
        s
        for s in node_specs(load_cell(DEMO), DEMO, BringupOptions(**_plant_options(plain)))
        if s.executable.endswith("_bridge")
    ]
