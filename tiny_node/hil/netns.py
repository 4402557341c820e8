"""Two hosts on one machine: the node and the harness in their own Linux network namespaces.

The harness creates two namespaces joined by a veth pair with addresses in a private /30
that exists only inside them (:data:`HIL_ADDR` / :data:`NODE_ADDR`); nothing outside the
namespaces is touched and no other address is ever targeted.  DDS between them:

* Fast DDS's shared-memory transport does not cross namespaces reliably, so both sides use
  a UDPv4-only profile (:func:`write_udp_profile`);
* discovery over the veth: ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` plus
  ``ROS_STATIC_PEERS`` = the other side's address (unicast, no multicast routing needed);
* camera frames go as JPEG (``camera_transport: compressed``): a 921,600-byte raw frame is
  ~640 IP fragments over UDP, best effort, and is lost as a whole with any one of them, as
  across real hosts (docs/DDS.md).

Creating namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); :func:`unavailable_reason`
says why not otherwise, and the two-host test is skipped with that reason.  The namespaces
are always deleted, also when the run fails (deleting a namespace deletes its veth end).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: The project's own test hosts: a /30 inside the two namespaces only.
HIL_ADDR = "10.200.0.1"
NODE_ADDR = "10.200.0.2"
PREFIX_LEN = 30

UDP_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<!-- tiny_node HIL: UDPv4 only (no shared memory) between network namespaces / hosts. -->
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>tiny_node_hil_udpv4</transport_id>
        <type>UDPv4</type>
        <sendBufferSize>4194304</sendBufferSize>
        <receiveBufferSize>4194304</receiveBufferSize>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="tiny_node_hil_udp" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>tiny_node_hil_udpv4</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


@dataclass(frozen=True)
class Hosts:
    """The two namespaces of a run."""

    hil_ns: str
    node_ns: str
    profile: Path

    def node_prefix(self) -> list[str]:
        """Command prefix that runs a process on the node's host (``ip`` execs: same pid)."""
        return ["ip", "netns", "exec", self.node_ns]

    def hil_prefix(self) -> list[str]:
        """Command prefix that runs a process on the harness's host."""
        return ["ip", "netns", "exec", self.hil_ns]


def _ip(*args: str) -> str:
    """Run ``ip ARGS``; its output.

    In a session of its own: a terminal's Ctrl-C (or a group's SIGTERM) reaches the whole foreground
    process group, and killed an ``ip netns del`` under way, which left the namespace behind and a
    traceback beside a PASS report (review). The stop is the caller's.
    """
    from tiny_node.stopping import STOP_SIGNALS

    # ... and with the stop signals blocked while it starts: between the fork and its setsid() the
    # child was still in the group, with default handlers, and a Ctrl-C then killed it (review).
    # They stay pending here and reach this process's (held) handlers once unblocked.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        proc = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=20,
                              start_new_session=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def unavailable_reason() -> str:
    """Why two namespaces cannot be made here ('' when they can): needs root and ``ip``."""
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN); not running as root"
    from tiny_node.stopping import stops_held

    with stops_held() as held:  # made and deleted whole: a stop between the two left tnprobe<pid> (review)
        why = _probe(f"tnprobe{os.getpid()}")
    if held.signum is not None:
        raise held.stop()
    return why


def _probe(name: str) -> str:
    try:
        _ip("netns", "add", name)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"not permitted to create a network namespace: {exc}"
    try:
        _ip("netns", "del", name)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"could not delete the probe namespace {name}: {exc}"
    return ""


def write_udp_profile(path: Path) -> Path:
    """The UDPv4-only Fast DDS profile for both sides."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(UDP_PROFILE)
    return path


def ros_env(base: dict[str, str], peer: str, profile: Path, domain_id: int) -> dict[str, str]:
    """ROS env for one side: subnet discovery with the other side as static peer, UDP profile."""
    env = dict(base)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
    env["ROS_STATIC_PEERS"] = peer
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env


@contextmanager
def two_hosts(work_dir: Path, tag: str | None = None) -> Iterator[Hosts]:
    """Create the namespaces and the veth pair; delete them on exit, whatever happened."""
    from tiny_node.stopping import stops_held

    tag = tag or str(os.getpid())
    hil_ns, node_ns = f"tnhil{tag}", f"tnnode{tag}"
    veth_h, veth_n = f"tnh{tag}"[:15], f"tnn{tag}"[:15]
    created: list[str] = []
    try:
        # Held while they are made: a stop killed an `ip netns add` that had made its namespace
        # before it was recorded as made, so it was never deleted. Raised once all are made.
        with stops_held() as held:
            for ns in (hil_ns, node_ns):
                _ip("netns", "add", ns)  # one that failed ("File exists": another's) is not this run's to delete
                created.append(ns)
            _ip("link", "add", veth_h, "type", "veth", "peer", "name", veth_n)
            _ip("link", "set", veth_h, "netns", hil_ns)
            _ip("link", "set", veth_n, "netns", node_ns)
            for ns, dev, addr in ((hil_ns, veth_h, HIL_ADDR), (node_ns, veth_n, NODE_ADDR)):
                _ip("-n", ns, "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", dev)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "set", dev, "up")
                # Fast DDS also sends SPDP multicast; give it a route so sendto does not fail.
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        if held.signum is not None:
            raise held.stop()
        yield Hosts(hil_ns, node_ns, write_udp_profile(work_dir / "fastdds_udp.xml"))
    finally:
        # Held: a stop here left the namespaces behind; passed on once they are deleted.
        with stops_held() as deleting:
            _end_left_processes(created)
            errors = []
            for ns in created:
                try:
                    _ip("netns", "del", ns)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    errors.append(str(exc))
        if deleting.signum is not None:  # to the caller's handler (held there too while it cleans up)
            signal.raise_signal(deleting.signum)
        if errors:
            raise RuntimeError("could not delete network namespaces: " + "; ".join(errors))


#: Seconds the processes left in the namespaces get to end on their own (a node ends on the
#: SIGTERM the kernel sends it as the harness that started it dies: stopping.end_with_parent).
LEFT_GRACE_S = 10.0


def _pids(ns: str) -> list[int]:
    """The processes in namespace ``ns`` (none when it is gone or ``ip`` cannot say)."""
    try:
        return [int(p) for p in _ip("netns", "pids", ns).split()]
    except (RuntimeError, subprocess.TimeoutExpired, ValueError):
        return []


def _end_left_processes(namespaces: list[str]) -> None:
    """End what the harness inside left running in ``namespaces`` before they are deleted, saying so.

    Why: a harness inside killed outright (SIGKILL, the OOM killer) left its node and model worker
    running in a deleted namespace, using CPU and memory, found only through ``/proc/*/ns/net``
    (review). They get :data:`LEFT_GRACE_S` to end, then SIGTERM, then SIGKILL.
    """
    left = _left_after({ns: [] for ns in namespaces}, 0.0)
    if not left:
        return
    left = _left_after(left, LEFT_GRACE_S)
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not left:
            return
        named = "; ".join(f"{ns}: " + ", ".join(f"{pid} ({_comm(pid)})" for pid in pids) for ns, pids in left.items())
        with contextlib.suppress(OSError):  # a terminal gone (hang-up): the clean-up must still happen
            print(f"hil --netns: process(es) still running {LEFT_GRACE_S:g} s after the harness inside ended, "
                  f"sent {signal.Signals(sig).name}: {named}", file=sys.stderr, flush=True)
        for pids in left.values():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        left = _left_after(left, wait_s)


def _left_after(left: dict[str, list[int]], seconds: float) -> dict[str, list[int]]:
    """The namespaces of ``left`` that still hold processes, and those processes.

    Looked at every 0.2 s until none do or ``seconds`` have passed (once, for 0).
    """
    end = time.monotonic() + seconds
    while True:
        left = {ns: pids for ns in left if (pids := _pids(ns))}
        if not left or time.monotonic() >= end:
            return left
        time.sleep(0.2)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def exists(name: str) -> bool:
    """True if a named network namespace exists (for tests of the clean-up)."""
    return Path("/var/run/netns", name).exists()
