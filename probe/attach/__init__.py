"""``probe attach``: diagnose a job that is already running, and leave it running untouched.

``target`` reads the process from /proc; ``permissions`` says whether it may be debugged and what
would allow it; ``script`` builds what the process runs; ``inject`` loads the agent (listener,
``sys.remote_exec`` or gdb); ``runner`` records the session from start to clean end. The parts
that run inside the job are ``probe.agent.attached`` and ``probe.agent.listener``.
"""
