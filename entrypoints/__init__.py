"""Doors to the outside world: HTTP, CLI, worker. ``bootstrap`` is the one composition root."""
