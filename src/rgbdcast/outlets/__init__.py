"""Every way out of a server besides its ZeroMQ publishers: the web viewer, the plain-TCP
gateway, Zenoh and ROS 2."""
