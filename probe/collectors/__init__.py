"""One module per source of data.

In-process collectors (``gc``, ``torch``, ``asyncio``, ``stacks``) run inside the target through
the agent and use the standard library only. Outside collectors (``proctree``, ``system``,
``gpu``) run in the probe process.
"""
