"""The road every scenario drives on: a straight two-lane road with kerbs and sidewalks.

Road frame: ``x`` forward along the road from the ego's start (front bumper at x = 0), ``y`` to
the left, ``z`` up, metres.  Traffic drives on the right, so the nearside (Euro NCAP) is the
right (``y < 0``) and the farside the left.  One layout for all scenarios keeps the renderer's
background cacheable and the suite's geometry comparable; scenarios place actors in it.
"""

from __future__ import annotations

LANE_WIDTH_M = 3.5
EGO_LANE_Y = 0.0
LEFT_LANE_Y = 3.5  # adjacent lane: same direction (overtaking) or oncoming, per scenario
RIGHT_EDGE_Y = -1.75  # solid edge line of the ego lane
CENTRE_LINE_Y = 1.75  # dashed line between the ego lane and the left lane
LEFT_EDGE_Y = 5.25  # solid edge line of the left lane
RIGHT_STRIP_Y = -2.75  # centre of the 2 m parking / bike strip right of the ego lane
RIGHT_KERB_Y = -3.75
LEFT_KERB_Y = 5.75
SIDEWALK_WIDTH_M = 2.5
RIGHT_SIDEWALK_Y = RIGHT_KERB_Y - SIDEWALK_WIDTH_M / 2
LEFT_SIDEWALK_Y = LEFT_KERB_Y + SIDEWALK_WIDTH_M / 2
KERB_WIDTH_M = 0.15
LINE_WIDTH_M = 0.12  # urban lane line width

DASH_LENGTH_M = 3.0  # urban centre line: 3 m dash, 6 m gap
DASH_PERIOD_M = 9.0

STREET_LIGHT_SPACING_M = 25.0
STREET_LIGHT_POLE_Y = RIGHT_KERB_Y - 0.5
STREET_LIGHT_LAMP_Y = RIGHT_KERB_Y + 1.5  # the arm overhangs the strip
STREET_LIGHT_HEIGHT_M = 8.0
