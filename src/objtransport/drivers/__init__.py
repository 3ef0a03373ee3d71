"""asyncio drivers: each pumps bytes between a socket and a sans-I/O object."""
