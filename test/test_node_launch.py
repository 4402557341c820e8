"""The launch file's DDS profile goes to the node's process only (launch is stubbed: no PyPI wheel)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_package import DDS_VARS, LAUNCH_FILE, _load_launch_with_stubs, _run_launch


def test_the_dds_profile_is_the_nodes_environment_not_the_launch_files(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """SetEnvironmentVariable set it for the whole launch: a launch file including this one gave
    every process it started after it (other nodes, on other RMWs or profiles) our profile."""
    tree = ast.parse(LAUNCH_FILE.read_text(encoding="utf-8"))
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not used & {"SetEnvironmentVariable", "AppendEnvironmentVariable"}
    share = tmp_path / "share" / "tiny_node"
    (share / "config").mkdir(parents=True)
    profile = share / "config" / "fastdds_profile.xml"
    profile.write_text("<dds/>", encoding="utf-8")
    for var in DDS_VARS:
        monkeypatch.delenv(var, raising=False)
    mod = _load_launch_with_stubs(monkeypatch, share)

    (node,) = _run_launch(mod, {})  # the node alone: no action that changes the launch's environment
    assert type(node).__name__ == "LifecycleNode"
    assert node.kwargs["additional_env"] == {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile),
                                             "FASTRTPS_DEFAULT_PROFILES_FILE": str(profile)}
    (node,) = _run_launch(mod, {"ROS_DISTRO": "kilted"})
    assert node.kwargs["additional_env"] == {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile)}
    (node,) = _run_launch(mod, {"ROS_DISTRO": "jazzy"})
    assert node.kwargs["additional_env"] == {"FASTRTPS_DEFAULT_PROFILES_FILE": str(profile)}
    (node,) = _run_launch(mod, {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    assert node.kwargs["additional_env"] is None  # another RMW: nothing added
