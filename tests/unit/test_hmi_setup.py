"""HMI set-up: where it listens (loopback, TLS with a kept self-signed certificate, insecure only when asked), its
node spec in the bringup, and every report chart as a PNG (`cobot-cell report DB --plot DIR`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image
from test_hmi_model import part

from cobot_cell.cli import main as cli
from cobot_cell.hmi.shift import load_report
from cobot_cell.hmi.tls import CERT_NAME, is_loopback, parse_address, plan_listen
from cobot_cell.ros.bringup import BringupOptions, node_specs
from cobot_cell.skills import load_cell
from cobot_cell.supervisor.charts import write_charts
from cobot_cell.supervisor.log import ProductionLog

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo_cell.yaml"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0", ("0.0.0.0", 8080)),
        (":9000", ("127.0.0.1", 9000)),
        ("[::1]:8443", ("::1", 8443)),
        ("hmi.local:80", ("hmi.local", 80)),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("127.0.0.1:http", "bad address '127.0.0.1:http': port must be a number from 1 to 65535"),
        ("127.0.0.1:70000", "bad address '127.0.0.1:70000': port must be a number from 1 to 65535"),
        ("[::1", "bad address '[::1': missing ']' after an IPv6 host"),
    ],
)
def test_parse_address_errors(text, message):
    with pytest.raises(ValueError) as err:
        parse_address(text)
    assert str(err.value) == message


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("hmi.local")


def test_loopback_serves_plain_http(tmp_path):
    listen = plan_listen("127.0.0.1", 8080, cert_dir=tmp_path)
    assert (listen.scheme, listen.cert) == ("http", None)
    assert not list(tmp_path.iterdir())


def test_insecure_off_loopback_is_logged(tmp_path, caplog):
    listen = plan_listen("0.0.0.0", 8080, insecure=True, cert_dir=tmp_path)
    assert listen.scheme == "http"
    assert "serving plain HTTP on 0.0.0.0:8080, a non-loopback address (insecure" in caplog.text


def test_off_loopback_generates_a_self_signed_certificate_once(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    first = plan_listen("0.0.0.0", 8443, cert_dir=tmp_path)
    assert first.scheme == "https" and Path(first.cert).name == CERT_NAME
    assert (Path(first.key).stat().st_mode & 0o777) == 0o600
    pem = Path(first.cert).read_bytes()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert "generated a self-signed certificate" in caplog.text
    again = plan_listen("0.0.0.0", 8443, cert_dir=tmp_path)
    assert again == first and Path(again.cert).read_bytes() == pem, "the certificate is kept, not made anew"


def test_given_certificate_files(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    assert plan_listen("0.0.0.0", 443, str(cert), str(key)).cert == str(cert)
    with pytest.raises(ValueError, match="cert and key go together: give both files or neither"):
        plan_listen("0.0.0.0", 443, str(cert))
    with pytest.raises(ValueError, match="key file .*missing.pem does not exist"):
        plan_listen("0.0.0.0", 443, str(cert), str(tmp_path / "missing.pem"))


def test_bringup_adds_the_hmi_node_when_asked():
    cfg = load_cell(DEMO)
    assert not [s for s in node_specs(cfg, DEMO) if s.executable == "hmi"]
    specs = node_specs(cfg, DEMO, BringupOptions(hmi="0.0.0.0:8443", hmi_insecure=True, db="/tmp/p.db"))
    (hmi,) = [s for s in specs if s.executable == "hmi"]
    assert (hmi.fqn, hmi.module) == ("/demo/hmi", "cobot_cell.ros.hmi_node")
    assert hmi.parameters["host"] == "0.0.0.0" and hmi.parameters["port"] == 8443
    assert hmi.parameters["insecure"] is True and hmi.parameters["db"] == "/tmp/p.db"
    assert hmi.parameters["cell_file"] == str(DEMO)
    with pytest.raises(ValueError, match="port must be a number"):
        node_specs(cfg, DEMO, BringupOptions(hmi="127.0.0.1:x"))


def make_log(path: Path) -> Path:
    with ProductionLog(path) as log:
        log.record_cycles([part(1, 0.0), part(2, 8.0), part(3, 16.0, status="scrap")])
        log.record_fault("demo", 9.0, "ERROR", "picker", "GRIP_MISSED", "m", fault_key="k1", cleared=11.0)
    return path


def test_every_report_chart_as_a_png(tmp_path):
    paths = write_charts(load_report(str(make_log(tmp_path / "p.db")), "demo"), tmp_path / "charts")
    assert sorted(p.name for p in paths) == [
        "cycles.png",
        "downtime.png",
        "gantt.png",
        "oee.png",
        "pareto.png",
        "report.png",
        "trend.png",
    ]
    for p in paths:
        img = Image.open(p).convert("RGB")
        assert len(img.getcolors(maxcolors=1 << 20)) > 20, f"{p.name} looks empty"


def test_report_command_plots(tmp_path, capsys):
    db = make_log(tmp_path / "p.db")
    assert cli(["report", str(db), "--plot", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.png").is_file() and (tmp_path / "out" / "gantt.png").is_file()
    assert "charts of cell 'demo'" in capsys.readouterr().out
