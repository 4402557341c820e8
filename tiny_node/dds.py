"""Fast DDS set-up for camera frames between processes, and isolated ROS environments.

A 640x480 rgb8 frame (921,600 bytes) is larger than the 512 KiB shared-memory segment Fast
DDS uses by default, so between two processes it travels as ~15 UDP fragments and, with the
best-effort sensor-data QoS, most frames are lost (2-7 of 150 arrived in our measurement).
The packaged profile ``config/fastdds_profile.xml`` gives every participant a 16 MiB
shared-memory segment (plus UDPv4 for other hosts); with it 150/150 arrive.  See
``docs/DDS.md``.

Fast DDS reads the profile when the first participant of a process is created, that is in
``rclpy.init()``: call :func:`configure_dds` before that, in every process that publishes or
subscribes frames (the node, the simulator bridge, bag replay, benchmarks).
"""

from __future__ import annotations

import os
import random
import sys
import warnings
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from tiny_node.share import find_config

PROFILE_NAME = "fastdds_profile.xml"
#: the same with UDPv4 on the loopback only, for ROS_LOCALHOST_ONLY=1 (rmw_fastrtps adds its
#: loopback transport to a profile's, it does not replace them: the node would stay on the LAN)
LOCALHOST_PROFILE_NAME = "fastdds_profile_localhost.xml"

#: Fast DDS 3.x (Kilted and later) reads the first, Fast DDS 2.x (Humble, Jazzy) the second.
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
_PROFILE_VAR = {3: PROFILE_VARS[0], 2: PROFILE_VARS[1]}
#: Distros released with Fast DDS 2.x; later ones (Kilted, Rolling) ship Fast DDS 3.x.
_FASTDDS2_DISTROS = frozenset({"foxy", "galactic", "humble", "iron", "jazzy"})
#: Set by a user who picked Fast DDS transports by hand (e.g. ``LARGE_DATA``); respected.
BUILTIN_TRANSPORTS_VAR = "FASTDDS_BUILTIN_TRANSPORTS"
#: Distros that know ``ROS_LOCALHOST_ONLY`` but not ``ROS_AUTOMATIC_DISCOVERY_RANGE``.
_LOCALHOST_ONLY_DISTROS = frozenset({"foxy", "galactic", "humble"})


def uses_fastdds(env: Mapping[str, str] = os.environ) -> bool:
    """Return True if the RMW selected by ``env`` is Fast DDS (also when none is selected).

    Fast DDS is the default RMW of every current ROS 2 distro, so an unset or empty
    ``RMW_IMPLEMENTATION`` counts as Fast DDS.
    """
    rmw = env.get("RMW_IMPLEMENTATION", "").strip()
    return rmw == "" or rmw.startswith("rmw_fastrtps")


def find_profile(env: Mapping[str, str] | None = None) -> Path | None:
    """Locate the packaged Fast DDS profile ``env`` asks for; ``None`` if it cannot be found.

    ``ROS_LOCALHOST_ONLY=1`` in ``env``: the loopback-only variant. All install layouts come
    from the files in ``config/``: ``tiny_node/data/`` holds symlinks to them, which the build
    copies as regular files (see :mod:`tiny_node.share`).
    """
    localhost = (env or {}).get("ROS_LOCALHOST_ONLY", "").strip() == "1"
    return find_config(LOCALHOST_PROFILE_NAME if localhost else PROFILE_NAME)


def fastdds_major(env: Mapping[str, str] = os.environ) -> int | None:
    """Guess the Fast DDS major version (2 or 3) the process will load; ``None`` if unknown.

    From ``ROS_DISTRO`` when a ROS install is sourced, else from what the prefixes in
    ``AMENT_PREFIX_PATH`` and this interpreter's prefix hold: Fast DDS 3.x installs
    ``share/fastdds``, 2.x ``share/fastrtps``.
    """
    distro = env.get("ROS_DISTRO", "").strip().lower()
    if distro:
        return 2 if distro in _FASTDDS2_DISTROS else 3
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in (*prefixes, sys.prefix):
        share = Path(prefix) / "share"
        if (share / "fastdds").is_dir():
            return 3
        if (share / "fastrtps").is_dir():
            return 2
    return None


def configure_dds(env: MutableMapping[str, str] = os.environ) -> str | None:
    """Point Fast DDS at the packaged large-frame profile in ``env``; return its path.

    The variable the installed Fast DDS reads is set (see :func:`fastdds_major`):
    ``FASTDDS_DEFAULT_PROFILES_FILE`` for 3.x, ``FASTRTPS_DEFAULT_PROFILES_FILE`` for 2.x;
    both when the version is unknown (then Fast DDS 3.x loads the file twice and logs
    harmless "same id" errors, which is why one is preferred).  ``env`` is left alone, and
    ``None`` returned, when the user already chose: a profiles file is set in either
    variable, or ``FASTDDS_BUILTIN_TRANSPORTS`` is set; when ``RMW_IMPLEMENTATION`` names
    another middleware; or when the profile cannot be found.

    With the default ``env`` (``os.environ``) this must run before ``rclpy.init()``: Fast DDS
    reads the variables once, when the process creates its first participant.
    """
    if any(env.get(var) for var in PROFILE_VARS) or env.get(BUILTIN_TRANSPORTS_VAR):
        return None
    if not uses_fastdds(env):
        return None
    profile = find_profile(env)
    if profile is None:
        return None
    path = str(profile)
    major = fastdds_major(env)
    for var in PROFILE_VARS if major is None else (_PROFILE_VAR[major],):
        env[var] = path
    if env is os.environ and _rclpy_initialized():
        warnings.warn(
            "configure_dds() ran after rclpy.init(): this process keeps the Fast DDS "
            "transports it started with; call it before rclpy.init()",
            RuntimeWarning,
            stacklevel=2,
        )
    return path


#: RTPS port mapping (DDSI-RTPS 9.6.1.1 defaults): domain d's ports are PB + DG * d + 0..249, the
#: discovery multicast port (+0, bound by Cyclone DDS, whose unicast ports are random) and the
#: per-participant unicast ones (+10 + 2 * participant, +11 + 2 * participant: Fast DDS's).
RTPS_PORT_BASE, RTPS_DOMAIN_GAIN = 7400, 250
SAFE_DOMAINS = range(1, 102)  # 1..101: under the Linux ephemeral ports for any participant count


def domains_in_use(udp_tables: tuple[str, ...] = ("/proc/net/udp", "/proc/net/udp6")) -> set[int]:
    """The DDS domains some process on this host has a participant in, from its bound UDP ports.

    Why: with discovery on localhost, a random domain that a running ROS stack uses (on vehicle
    compute, a HIL rig) would mix the harness's simulated sensors into it. A table that cannot
    be read adds nothing (not Linux).
    """
    used: set[int] = set()
    for table in udp_tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            try:  # "sl local_address:port ...", the port in hex; a line not so is no evidence
                port = int(line.split()[1].rsplit(":", 1)[1], 16)
            except (IndexError, ValueError):
                continue
            domain = (port - RTPS_PORT_BASE) // RTPS_DOMAIN_GAIN
            if port >= RTPS_PORT_BASE and domain in SAFE_DOMAINS:
                used.add(domain)
    return used


def free_domain(base: Mapping[str, str] | None = None) -> int:
    """A random domain in 1..101 that no process on this host uses, nor ``base``'s ROS_DOMAIN_ID."""
    env = os.environ if base is None else base
    taken = domains_in_use()
    own = env.get("ROS_DOMAIN_ID", "").strip()
    if own.isdigit():
        taken.add(int(own))
    free = [d for d in SAFE_DOMAINS if d not in taken] or list(SAFE_DOMAINS)
    return random.SystemRandom().choice(free)


def isolated_ros_env(
    domain_id: int | None = None,
    *,
    base: Mapping[str, str] | None = None,
    dds_profile: bool = True,
) -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) with a private ROS graph.

    The graph is a random ``ROS_DOMAIN_ID`` in 1..101 that no process on this host uses and
    that is not ``base``'s own (:func:`free_domain`; or ``domain_id``), with discovery kept
    on this host (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``; ``ROS_LOCALHOST_ONLY=1`` on
    Humble and older, which predate it), so tests and benchmarks neither see nor disturb
    other ROS processes.  With ``dds_profile`` the packaged Fast DDS profile is applied too
    (see :func:`configure_dds`).  Pass the result as ``env=`` to a subprocess, or
    ``os.environ.update()`` it before ``rclpy.init()``.
    """
    if domain_id is None:
        domain_id = free_domain(base)
    if not 0 <= domain_id <= 232:
        raise ValueError(f"ROS_DOMAIN_ID must be in 0..232 (1..101 is safe), got {domain_id}")
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    if env.get("ROS_DISTRO", "").lower() in _LOCALHOST_ONLY_DISTROS:
        env["ROS_LOCALHOST_ONLY"] = "1"
    else:
        # Deprecated since Jazzy; when set it overrides the discovery range, with a warning.
        env.pop("ROS_LOCALHOST_ONLY", None)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        env.pop("ROS_STATIC_PEERS", None)
    if dds_profile:
        configure_dds(env)
    return env


def _rclpy_initialized() -> bool:
    rclpy = sys.modules.get("rclpy")
    if rclpy is None:
        return False
    try:
        return bool(rclpy.ok())
    except Exception:  # a half-imported or shut-down rclpy: "not initialized"
        return False
