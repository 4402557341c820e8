"""Start the node as its own process, as on vehicle compute.

For the demo, the benchmark, the integration tests and the HIL harness: only DDS passes
between the node and its peers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO


def ros_param_arg(name: str, value: object) -> str:
    """``name:=value`` with the YAML spelling ROS needs (floats keep their point)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    return f"{name}:={text}"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def read_rss_kib(pid: int) -> int | None:
    """``VmRSS`` of a process from ``/proc/PID/status`` in KiB; None if it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent pid, ...); None if gone.

    The command name is cut at its last ``)``: it may hold spaces and parentheses itself.
    """
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_running(pid: int) -> bool:
    """Whether process ``pid`` runs: a zombie (dead, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    fields = proc_stat(pid)  # None: exists, but unreadable here
    return fields is None or fields[0] not in ("Z", "X")


class NodeProcess:
    """``python -m tiny_node run`` in a child process, with its output in a log file."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        params: Mapping[str, object] | None = None,
        params_file: Path | None = None,
        log_path: Path | None = None,
        namespace: str = "",
        extra_args: list[str] | None = None,
        command: list[str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        # ``command`` replaces the default node command (e.g. ``ros2 run tiny_node tiny_node``);
        # ``prefix`` wraps it (e.g. ``ip netns exec NS``, which execs, so the pid is the node's).
        self.cmd = list(prefix or []) + list(command or [sys.executable, "-m", "tiny_node", "run"])
        if params_file is not None:
            self.cmd += ["--params-file", str(params_file)]
        params = dict(params or {})
        if "model_bundle" in params and command is None:
            # the node's own override, over every params file: as a `-p` (rcl's section /**) a params
            # file's /**/tiny_node after a /** section won, and `sim --realtime`'s rules run loaded the
            # file's model (review 2026-12-08). "''" is YAML's empty string here: rules only. Only to
            # tiny_node's start command: another (`hil --node-cmd`) gets the `-p` any ROS node takes.
            bundle = str(params.pop("model_bundle"))
            self.cmd += ["--model-bundle", "" if bundle in ("''", '""') else bundle]
        self.cmd += extra_args or []
        ros = ["--ros-args", "--log-level", "tiny_node:=info"]
        if namespace:
            ros += ["-r", f"__ns:={namespace}"]
        for k, v in params.items():
            ros += ["-p", ros_param_arg(k, v)]
        self.cmd += ros
        from tiny_node.stopping import PARENT_ENV

        # the node ends with this process, even one killed outright (stopping.end_with_parent)
        self.env = {**env, PARENT_ENV: str(os.getpid())}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> NodeProcess:
        """Launch the node (returns at once; use a feeder's ``wait_for_node``)."""
        from tiny_node.stopping import stops_held

        if self.log_path is not None:
            self._log = self.log_path.open("wb")
        # Held while it starts: a stop inside Popen, after the fork, left the node running in its own
        # session, unknown to the caller, which said it had stopped it (review). Raised once the node
        # is stopped here: demo, bench and sim start it outside their clean-up's try (review); a caller
        # that stops it again (the HIL harness) reads its exit status.
        with stops_held() as held:
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=self._log or subprocess.DEVNULL,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        if held.signum is not None:
            with stops_held():  # a second stop is the same request
                self.stop()
            raise held.stop()
        return self

    @property
    def pid(self) -> int:
        """Process id of the node."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """True while the node process runs."""
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[int]:
        """Pids of the node's child processes (the model worker)."""
        kids: list[int] = []
        task_dir = Path(f"/proc/{self.pid}/task")
        for task in task_dir.glob("*"):
            try:
                kids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return kids

    def wait_for_worker(self, timeout_s: float = 30.0, exclude: set[int] | None = None) -> int:
        """Pid of the model worker (a spawned child not in ``exclude``), waiting for it.

        multiprocessing also starts a resource tracker child; the worker is the one whose
        command line runs ``spawn_main``.
        """
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            kids = [k for k in self.children()
                    if k not in (exclude or set()) and b"spawn_main" in _cmdline(k)]
            if kids:
                return kids[0]
            time.sleep(0.05)
        raise TimeoutError(f"no model worker under node pid {self.pid} after {timeout_s} s")

    def rss_kib(self, pid: int | None = None) -> int | None:
        """Resident set size of the node (or of ``pid``) from /proc, KiB; None if gone."""
        return read_rss_kib(self.pid if pid is None else pid)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT (as ``ros2 launch`` does), then SIGKILL if it does not exit; return code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        return int(self.proc.returncode)

    def output(self) -> str:
        """The node's log so far (for error messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")
