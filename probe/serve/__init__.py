"""Serving: diagnose a model server under load (``probe doctor --on-port``, ``probe load``).

- ``ports``: which TCP ports a process tree listens on, from ``/proc``.
- ``onport``: start the load command once the server listens, then stop the server.
- ``load``: the load generator behind ``probe load`` (an async HTTP client, the optional extra
  ``probe-doctor[serve]``), which records every request into the session when asked.
"""
