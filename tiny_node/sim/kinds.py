"""Catalogue of actor kinds: default dimensions, how they behave for sensors, and colours.

Dimensions of the test targets are Euro NCAP's (``../shared/reference/aeb-test-protocols.md``):
target car 4.023 x 1.712 x 1.427 m, CPNCO obstruction cars 4.4 x 1.8 m, adult dummy
1.8 x 0.6 x 0.5 m (h x l x w), child 1.154 x 0.711 x 0.298 m, bicycle 1.89 m long and 1.2 m
high.  The rest (parked-car height, cyclist with rider, gantry, markings) are stated here as
assumptions.  ``length`` is along the actor's heading, ``width`` across it.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class KindInfo:
    """What a kind of actor is: size, elevation, whether it is flat or a VRU, its colour."""

    length_m: float
    width_m: float
    height_m: float
    z_m: float = 0.0  # bottom above the road (a gantry's clearance)
    flat: bool = False  # painted / flush with the road: no obstacle, no radar return
    vru: bool = False
    colour: RGB = (128, 128, 128)


KINDS: dict[str, KindInfo] = {
    # Euro NCAP global vehicle target (reference: 4.023 x 1.712 x 1.427 m).
    "car": KindInfo(4.023, 1.712, 1.427, colour=(170, 30, 35)),
    # CPNCO obstruction vehicles 4.4 x 1.8 m (reference); height 1.45 m assumed.
    "parked_car": KindInfo(4.4, 1.8, 1.45, colour=(60, 80, 120)),
    # Adult dummy h 1.8, l 0.6, w 0.5 (reference); black top, blue trousers as the EPTa.
    "adult": KindInfo(0.6, 0.5, 1.8, vru=True, colour=(35, 35, 40)),
    # Child dummy h 1.154, l 0.711, w 0.298 (reference).
    "child": KindInfo(0.711, 0.298, 1.154, vru=True, colour=(40, 40, 48)),
    # Bicycle 1.89 m long, 1.2 m high (reference); 1.8 m with the rider and 0.6 m wide assumed.
    "cyclist": KindInfo(1.89, 0.6, 1.8, vru=True, colour=(30, 30, 36)),
    # A generic obstacle on the road (crate / barrel), assumed 0.6 x 0.6 x 1.0 m.
    "static": KindInfo(0.6, 0.6, 1.0, colour=(230, 110, 20)),
    # Overhead sign bridge spanning the road, 5.2 m clearance (assumed), 1.5 m high sign band.
    "gantry": KindInfo(1.0, 16.0, 1.5, z_m=5.2, colour=(20, 90, 160)),
    # Painted marking (zebra stripes, arrows): flat.
    "road_marking": KindInfo(3.0, 3.0, 0.0, flat=True, colour=(235, 235, 230)),
    # Manhole cover 0.6 m, flush with the road.
    "manhole": KindInfo(0.6, 0.6, 0.0, flat=True, colour=(55, 55, 58)),
}

VRU_KINDS = frozenset(k for k, v in KINDS.items() if v.vru)
CAR_KINDS = frozenset({"car", "parked_car"})

# The subject vehicle (VUT) is ~4.36 x 1.82 m (reference, Car-to-Car section).
EGO_LENGTH_M = 4.36
EGO_WIDTH_M = 1.82
EGO_HEIGHT_M = 1.5
