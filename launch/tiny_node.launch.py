"""Launch the tiny_node lifecycle node.

    ros2 launch tiny_node tiny_node.launch.py
    ros2 launch tiny_node tiny_node.launch.py params_file:=/path/params.yaml \
        model_bundle:=/path/bundle namespace:=ego use_sim_time:=true autostart:=false

Arguments:
  params_file   ROS params YAML (default: the installed share/tiny_node/config/tiny_node.yaml)
  model_bundle  model bundle directory; '' keeps the params file's value
  namespace     node namespace ('' = root); topics are relative, so they follow it
  use_sim_time  use /clock (bag replay, simulation); '' (the default) sets nothing, so the
                params file's value stands, or a SetParameter('use_sim_time', True) of a
                launch file including this one (the ROS way to put a whole stack on /clock)
  autostart     the node configures and activates itself (its default); false passes
                --no-autostart and leaves it unconfigured for a lifecycle manager or
                `ros2 lifecycle set /tiny_node configure`

The node's process gets the packaged Fast DDS profile (16 MiB shared-memory segment for
camera frames, see docs/DDS.md) unless the environment already names a profiles file,
sets FASTDDS_BUILTIN_TRANSPORTS, or selects another RMW. It is passed to this node's
process only (additional_env): with SetEnvironmentVariable it leaked into every process a
launch file including this one started after it.

Written against the launch / launch_ros API common to Humble, Jazzy and Kilted (not
LifecycleNode(autostart=...), which Humble lacks: the node's own --no-autostart flag does it).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

PACKAGE = 'tiny_node'
PROFILE_VARS = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
FASTDDS2_DISTROS = ('foxy', 'galactic', 'humble', 'iron', 'jazzy')
TRUE = ('true', '1', 'yes', 'on')


def _dds_profile_env(env, share):
    """Return the environment that selects the packaged Fast DDS profile for the node, or {}."""
    # ROS_LOCALHOST_ONLY=1: UDPv4 on the loopback only (rmw_fastrtps adds its loopback transport
    # to a profile's instead of replacing them: with the plain profile the node would stay on the LAN)
    localhost = env.get('ROS_LOCALHOST_ONLY', '').strip() == '1'
    name = 'fastdds_profile_localhost.xml' if localhost else 'fastdds_profile.xml'
    profile = os.path.join(share, 'config', name)
    user_chose = any(env.get(v) for v in PROFILE_VARS) or env.get('FASTDDS_BUILTIN_TRANSPORTS')
    rmw = env.get('RMW_IMPLEMENTATION', '')
    if user_chose or (rmw and not rmw.startswith('rmw_fastrtps')) or not os.path.isfile(profile):
        return {}
    distro = env.get('ROS_DISTRO', '').lower()
    if not distro:
        names = PROFILE_VARS  # unknown Fast DDS version: set both
    elif distro in FASTDDS2_DISTROS:
        names = PROFILE_VARS[1:]  # Fast DDS 2.x reads FASTRTPS_DEFAULT_PROFILES_FILE
    else:
        names = PROFILE_VARS[:1]  # Fast DDS 3.x reads FASTDDS_DEFAULT_PROFILES_FILE
    return {name: profile for name in names}


def _launch_setup(context, *args, **kwargs):
    share = get_package_share_directory(PACKAGE)
    env = dict(os.environ)
    env.update(getattr(context, 'environment', {}))
    params_file = LaunchConfiguration('params_file').perform(context)
    model_bundle = LaunchConfiguration('model_bundle').perform(context)
    use_sim_time = LaunchConfiguration('use_sim_time').perform(context).strip().lower()
    autostart = LaunchConfiguration('autostart').perform(context).lower() in TRUE

    # Only when given: the overrides are the node's last params file, after an including launch
    # file's SetParameter (-p), so a default 'false' here put the node on wall time while the rest
    # of a stack ran on /clock.
    overrides = {'use_sim_time': use_sim_time in TRUE} if use_sim_time else {}
    if model_bundle:
        overrides['model_bundle'] = model_bundle

    node = LifecycleNode(
        package=PACKAGE,
        executable='tiny_node',
        name='tiny_node',
        namespace=LaunchConfiguration('namespace').perform(context),
        parameters=[params_file, overrides] if overrides else [params_file],
        # The node configures and activates itself unless told not to, as under `ros2 run`.
        arguments=[] if autostart else ['--no-autostart'],
        # for this node's process only (ExecuteProcess's additional_env, Humble to Kilted)
        additional_env=_dds_profile_env(env, share) or None,
        output='screen',
        emulate_tty=True,
    )
    return [node]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=os.path.join(share, 'config', 'tiny_node.yaml'),
            description='ROS params YAML for the node'),
        DeclareLaunchArgument(
            'model_bundle', default_value='',
            description="Model bundle directory; '' keeps the params file's value"),
        DeclareLaunchArgument(
            'namespace', default_value='', description='Node namespace'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='',
            description="Use simulation (/clock) time: true / false over the params file's "
                        "use_sim_time; '' sets nothing (the file's, or an enclosing SetParameter's)"),
        DeclareLaunchArgument(
            'autostart', default_value='true',
            description='Configure and activate the lifecycle node automatically'),
        OpaqueFunction(function=_launch_setup),
    ])
