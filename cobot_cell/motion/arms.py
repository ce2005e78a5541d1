"""Published data of the Universal Robots arms the cell knows by model name.

Every figure comes from Universal Robots; the sources (cited per figure in docs/arms.md):

- [DH] "DH Parameters for calculations of kinematics and dynamics", universal-robots.com/articles/ur/
  application-installation/dh-parameters-for-calculations-of-kinematics-and-dynamics/ (d, a; link masses).
  The UR15 is not in that article yet: its d, a are UR's default calibration shipped in ur_description
  (config/ur15/default_kinematics.yaml, ros-industrial/universal_robot, "Add support for UR15", 2025).
- [MAN] Each arm's user manual, technical specifications (joint ranges and speeds): e-Series manuals v5.8 for
  UR3e/5e/10e/16e, v5.14 for UR20/UR30, as cited by ur_description's config/<model>/joint_limits.yaml. The UR7e
  and UR12e are the UR5e and UR10e arms with a higher rating; the UR15's figures are ur_description's.
- [TORQ] "Max. joint torques", universal-robots.com/articles/ur-articles/max-joint-torques (via ur_description).
- [SPEC] The arm's datasheet: rated payload (kg) and reach (m, centre of the base joint to the tool flange).
- Joint acceleration limits are not published by UR. The default is URScript's `movej` default joint
  acceleration, 1.4 rad/s^2 (URScript Programming Language manual), the same for every joint and model; a
  cell file sets its own under `limits.acceleration`.

The UR family shares one geometry (standard DH, alpha = (pi/2, 0, 0, pi/2, -pi/2, 0)): six numbers d1, a2,
a3, d4, d5, d6 describe an arm, so one closed-form IK (`cobot_cell.motion.kinematics`) serves all of them.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

__all__ = ["ARMS", "DEFAULT_ACCELERATION", "JOINT_NAMES", "ArmSpec", "arm_spec"]

JOINT_NAMES = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)
DEFAULT_ACCELERATION = 1.4
"""rad/s^2 for every joint: URScript movej's default acceleration (UR publishes no joint acceleration limit)."""

_DEG = math.pi / 180.0
# Position ranges: +-360 degrees, the elbow +-180 degrees (it cannot turn further with the upper arm in the way;
# as in ur_description's joint_limits.yaml).
_POSITION = ((-2 * math.pi, 2 * math.pi),) * 2 + ((-math.pi, math.pi),) + ((-2 * math.pi, 2 * math.pi),) * 3


@dataclass(frozen=True)
class ArmSpec:
    """One arm model: DH lengths, joint limits, link masses, rated payload and reach (SI units)."""

    name: str
    dh: tuple[float, float, float, float, float, float]
    """d1, a2, a3, d4, d5, d6 (m), standard DH [DH]."""
    velocity: tuple[float, ...]
    """Maximum joint speeds (rad/s) [MAN]."""
    effort: tuple[float, ...]
    """Maximum joint torques (N m) [TORQ]."""
    link_masses: tuple[float, ...]
    """Masses of links 1..6 (kg) [DH]."""
    payload: float
    """Rated payload (kg) [SPEC]."""
    reach: float
    """Reach (m) [SPEC]."""
    derating: tuple[tuple[float, float], ...] = ()
    """Payload (kg) by centre-of-gravity offset from the flange (m), where the maker publishes it as numbers."""
    position: tuple[tuple[float, float], ...] = _POSITION
    acceleration: tuple[float, ...] = (DEFAULT_ACCELERATION,) * 6

    @property
    def d(self) -> tuple[float, ...]:
        """DH d per joint (m)."""
        d1, _, _, d4, d5, d6 = self.dh
        return (d1, 0.0, 0.0, d4, d5, d6)

    @property
    def a(self) -> tuple[float, ...]:
        """DH a per joint (m)."""
        return (0.0, self.dh[1], self.dh[2], 0.0, 0.0, 0.0)

    def payload_at(self, offset: float, curve: tuple[tuple[float, float], ...] | None = None) -> float:
        """Allowed payload (kg) with its centre of gravity `offset` m from the flange centre.

        `curve` (or the model's published `derating`) lists (offset, kg) points: linear between them, the first
        value below the first offset, 0 beyond the last; without a curve the rated payload at any offset.
        """
        points = curve if curve is not None else self.derating
        if not points:
            return self.payload
        offsets = [p[0] for p in points]
        i = bisect.bisect_right(offsets, offset)
        if i == 0:
            return points[0][1]
        if i == len(points):
            return points[-1][1] if offset <= offsets[-1] + 1e-12 else 0.0
        (x0, y0), (x1, y1) = points[i - 1], points[i]
        return y0 + (y1 - y0) * (offset - x0) / (x1 - x0)


def _deg(*values: float) -> tuple[float, ...]:
    return tuple(v * _DEG for v in values)


_UR5E_DH = (0.1625, -0.425, -0.3922, 0.1333, 0.0997, 0.0996)
_UR5E_MASSES = (3.761, 8.058, 2.846, 1.37, 1.3, 0.365)
_UR10E_DH = (0.1807, -0.6127, -0.57155, 0.17415, 0.11985, 0.11655)
_UR10E_MASSES = (7.369, 13.051, 3.989, 2.1, 1.98, 0.615)
_UR20_MASSES = (16.343, 29.632, 7.879, 3.054, 3.126, 0.846)

ARMS: dict[str, ArmSpec] = {
    spec.name: spec
    for spec in (
        ArmSpec(
            "ur3e",
            (0.15185, -0.24355, -0.2132, 0.13105, 0.08535, 0.0921),
            _deg(180, 180, 180, 360, 360, 360),
            (54, 54, 28, 9, 9, 9),
            (1.98, 3.4445, 1.437, 0.871, 0.805, 0.261),
            payload=3.0,
            reach=0.500,
        ),
        ArmSpec(
            "ur5e",
            _UR5E_DH,
            _deg(180, 180, 180, 180, 180, 180),
            (150, 150, 150, 28, 28, 28),
            _UR5E_MASSES,
            payload=5.0,
            reach=0.850,
        ),
        # UR7e: the UR5e arm with a 7.5 kg rating (same kinematics and joints).
        ArmSpec(
            "ur7e",
            _UR5E_DH,
            _deg(180, 180, 180, 180, 180, 180),
            (150, 150, 150, 28, 28, 28),
            _UR5E_MASSES,
            payload=7.5,
            reach=0.850,
        ),
        # UR10e: 10 kg as first rated; arms labelled 12.5 kg are the UR12e (same kinematics and joints).
        ArmSpec(
            "ur10e",
            _UR10E_DH,
            _deg(120, 120, 180, 180, 180, 180),
            (330, 330, 150, 54, 54, 54),
            _UR10E_MASSES,
            payload=10.0,
            reach=1.300,
        ),
        ArmSpec(
            "ur12e",
            _UR10E_DH,
            _deg(120, 120, 180, 180, 180, 180),
            (330, 330, 150, 54, 54, 54),
            _UR10E_MASSES,
            payload=12.5,
            reach=1.300,
        ),
        ArmSpec(
            "ur15",
            (0.2186, -0.6475, -0.5164, 0.1824, 0.1361, 0.1434),
            _deg(180, 180, 240, 300, 300, 300),
            (433, 433, 204, 70, 70, 70),
            (9.9883, 14.9255, 6.1015, 2.089, 2.0869, 1.0666),
            payload=15.0,
            reach=1.300,
        ),
        ArmSpec(
            "ur16e",
            (0.1807, -0.4784, -0.36, 0.17415, 0.11985, 0.11655),
            _deg(120, 120, 180, 180, 180, 180),
            (330, 330, 150, 54, 54, 54),
            (7.369, 10.45, 4.321, 2.18, 2.033, 0.907),
            payload=16.0,
            reach=0.900,
        ),
        ArmSpec(
            "ur20",
            (0.2363, -0.862, -0.7287, 0.201, 0.1593, 0.1543),
            _deg(120, 120, 150, 210, 210, 210),
            (738, 738, 433, 107, 107, 107),
            _UR20_MASSES,
            payload=20.0,
            reach=1.750,
        ),
        ArmSpec(
            "ur30",
            (0.2363, -0.637, -0.5037, 0.201, 0.1593, 0.1543),
            _deg(120, 120, 150, 210, 210, 210),
            (738, 738, 433, 107, 107, 107),
            _UR20_MASSES,
            payload=30.0,
            reach=1.300,
        ),
    )
}


def arm_spec(name: str) -> ArmSpec:
    """The published data of a named arm; ValueError listing the known models otherwise."""
    try:
        return ARMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown arm model '{name}': expected one of {', '.join(ARMS)}") from None
