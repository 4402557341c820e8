"""Euro NCAP 2026 colour band and points of a run, computed by the official rating code.

The colour of a frontal-collision test point comes from the relative impact speed and the VUT
speed.  The official rating code (``euroncap-rating-2026`` on the package index, Apache-2.0)
holds those tables; we feed it one test point and read back its colour and its points
(``matrix_processing.ComputedTestPoint`` / ``TestPoint.predicted_score``), so nothing is
re-typed here.  What the package does not cover, and what we do about it:

- it knows only the 2026 grid speeds 10 / 20 / 30 / 40 / 50+ km/h: an off-grid speed is scored
  with the table of the next lower grid speed (stricter), below 10 km/h with the 10 km/h one;
- when it is not installed (it is an optional dependency: it pulls in pandas), the same bands
  come from the table in ``../shared/reference/aeb-test-protocols.md``, with the package's
  boundary convention (a band's upper edge belongs to the band above: at 40 km/h exactly
  10 km/h is brown, where the reference's wording reads "orange <= 10"), and ``Band.source``
  says so;
- the suite-level general requirements (``compute_score.check_general_requirements_rules``: a
  CCRs point at <= 20 km/h or the CPNA 75 % point at 10 km/h, day or night, not green zeroes
  every Frontal Collisions score, which is every protocol here) are :func:`frontal_gate_passed`,
  since the package applies them to a whole spreadsheet.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from tiny_node.sim.scenario import Scenario, protocol_family

PACKAGE = "euroncap-rating-2026"
COLOURS = ("green", "yellow", "orange", "brown", "red")
# Reference: green 1.0 / yellow 0.75 / orange 0.5 / brown 0.25 / red 0 (fallback only).
REFERENCE_POINTS = {"green": 1.0, "yellow": 0.75, "orange": 0.5, "brown": 0.25, "red": 0.0}
# Reference, 2026 bands by VUT speed: (colour, upper edge of v_rel_impact in km/h) (fallback only).
REFERENCE_BANDS: dict[int, tuple[tuple[str, float], ...]] = {
    10: (("green", 0.0), ("red", math.inf)),
    20: (("green", 0.0), ("red", math.inf)),
    30: (("green", 0.0), ("brown", 10.0), ("red", math.inf)),
    40: (("green", 0.0), ("orange", 10.0), ("brown", 20.0), ("red", math.inf)),
    50: (("green", 0.0), ("yellow", 10.0), ("orange", 20.0), ("brown", 30.0), ("red", math.inf)),
}
# Scenario protocol family -> the package's test name (VRU names carry day / night).
_LIT = ("CPNA", "CPFA", "CPNCO", "CPLA")
_PLAIN = ("CCRs", "CCRm", "CCRb", "CBNA", "CBFA", "CBLA")


@dataclass(frozen=True)
class Band:
    """Colour band and points of one test point, and where the figures came from."""

    colour: str
    points: float
    source: str
    test_name: str
    grid_speed_kmh: int

    @property
    def value(self) -> str:
        """The colour, as the package's ``PredictionColor.value`` (for callers reading ``.value``)."""
        return self.colour


def test_name(protocol: str, light: str = "day") -> str | None:
    """The rating code's test name for a scenario protocol (``CPNA-25`` + night -> ``CPNA night``)."""
    family = protocol_family(protocol)
    if family in _LIT:
        return f"{family} {'night' if light == 'night' else 'day'}"
    if family in _PLAIN:
        return family
    return None


def grid_speed(vut_kmh: float) -> int:
    """The 2026 grid speed whose band table applies (next lower step of 10, 10..50)."""
    return int(min(50, max(10, 10 * math.floor(vut_kmh / 10.0 + 1e-9))))


def rating_code() -> str:
    """The installed rating package and version, or ``reference table``; without importing it.

    Why: stored runs carry their band and points, so a suite run before the package was
    installed (or upgraded) must not be reused after it (``runner.config_hash``).
    """
    try:
        return f"{PACKAGE} {metadata.version(PACKAGE)}"
    except metadata.PackageNotFoundError:
        return "reference table"


@functools.lru_cache(maxsize=1)
def _package() -> tuple[Any, str] | None:
    try:
        from euroncap_rating_2026.crash_avoidance import matrix_processing
    except ImportError:
        return None
    return matrix_processing, f"{PACKAGE} {metadata.version(PACKAGE)}"


def _reference_colour(grid: int, v_rel: float) -> str:
    bands = REFERENCE_BANDS[grid]
    if v_rel <= bands[0][1]:
        return bands[0][0]
    lower = bands[0][1]
    for colour, upper in bands[1:]:
        if lower <= v_rel < upper:
            return colour
        lower = upper
    return bands[-1][0]


def band(protocol: str, vut_kmh: float, relative_impact_kmh: float | None, light: str = "day") -> Band | None:
    """Colour and points for a run (no impact = 0 km/h); None for a protocol without bands."""
    name = test_name(protocol, light)
    if name is None:
        return None
    v_rel = max(0.0, relative_impact_kmh or 0.0)
    grid = grid_speed(vut_kmh)
    pkg = _package()
    if pkg is None:
        colour = _reference_colour(grid, v_rel)
        return Band(colour, REFERENCE_POINTS[colour], f"reference table ({PACKAGE} not installed)", name, grid)
    mp, source = pkg
    point = mp.TestPoint(row=0, col=0, color=None, test_range=mp.TestRange.STANDARD,
                         attributes={"VUT speed": f"{grid} km/h"})
    measured = mp.ComputedTestPoint(point, test_name=name, value=v_rel).measured_color
    scored = mp.TestPoint(row=0, col=0, color=measured, test_range=mp.TestRange.STANDARD)
    return Band(str(measured.value), float(scored.predicted_score), source, name, grid)


def score(scenario: Scenario, relative_impact_kmh: float | None) -> Band | None:
    """:func:`band` for a scenario (None for benign / custom drives without a protocol).

    None for an ``expect: no_brake`` drive too, protocol or not: it has no impact to score, and a
    band would add a green point (false activation or not) to the Euro NCAP total.
    """
    if scenario.protocol is None or scenario.expect != "avoid":
        return None
    return band(scenario.protocol, scenario.ego_speed_kmh, relative_impact_kmh, scenario.environment.light)


def frontal_gate_passed(points: Iterable[tuple[str, float, str]]) -> bool:
    """False when a CCRs point at <= 20 km/h or a CPNA-75 point at <= 10 km/h is not green.

    Why: the rating code then zeroes all Frontal Collisions scores (car, pedestrian and cyclist
    alike), not only the CCRs ones.  ``points`` holds (protocol, VUT km/h, colour) per run.
    """
    return not any(c != "green" and ((protocol_family(p) == "CCRs" and v <= 20.0) or (p == "CPNA-75" and v <= 10.0))
                   for p, v, c in points)
