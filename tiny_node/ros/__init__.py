"""ROS 2 glue: the lifecycle node and message conversion (the only code that imports rclpy)."""
