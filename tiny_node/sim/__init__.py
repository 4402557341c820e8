"""Scenario simulator: world, vehicle, sensors, camera renderer, scenarios and the NCAP suite.

Everything here runs in virtual time (``t`` and ``dt`` are passed in) and draws randomness only
from ``numpy.random.Generator`` objects seeded by the scenario seed, so a run is reproducible
byte for byte.  Module map: ``scenario`` (schema, YAML), ``kinds`` (actor catalogue with the
Euro NCAP target dimensions), ``motion`` (actor trajectories), ``vehicle`` (ego dynamics),
``world`` (ground truth, contact), ``sensors`` (range / odometry / IMU), ``camera`` (renderer),
``suite`` (built-in scenarios), ``scoring`` (Euro NCAP 2026 colour bands).
"""
