"""The daemon: the composition root of ``corral up``, its control socket, and the host it opens."""
