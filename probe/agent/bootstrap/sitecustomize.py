# probe's bootstrap. `probe doctor` puts this directory first on PYTHONPATH, so every Python
# process of the profiled tree imports this file at start-up. It starts probe's agent, then runs
# the sitecustomize this one shadows, if there is one, so a user's own start-up code still runs.
# It must never break the program: every failure is swallowed (and noted in the session).
# Kept to syntax every supported Python parses; the agent itself is loaded from the probe package
# next to this directory, not from whatever `probe` the target's sys.path might hold.


def _probe_bootstrap() -> None:
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(os.path.dirname(here))

    def note(what: str, exc: BaseException) -> None:
        try:
            import json

            config = json.loads(os.environ.get("PROBE_AGENT", "{}"))
            path = os.path.join(config["dir"], "agent-%d.err" % os.getpid())
            with open(path, "a") as f:
                f.write("%s: %s: %s\n" % (what, type(exc).__name__, exc))
        except Exception:
            pass

    def same_dir(entry: str) -> bool:
        try:
            return os.path.samefile(entry or ".", here)
        except OSError:
            return False

    # Leave sys.path as the program would see it without probe.
    sys.path[:] = [p for p in sys.path if not same_dir(p)]

    if os.environ.get("PROBE_AGENT"):
        try:
            if "probe" not in sys.modules:
                # Import probe from beside this directory, whatever the target's sys.path holds.
                parent = os.path.dirname(package)
                sys.path.insert(0, parent)
                try:
                    import probe  # noqa: F401
                finally:
                    sys.path.remove(parent)
            from probe.agent import runtime

            runtime.start_from_env()
        except Exception as exc:
            note("agent start", exc)

    # Chain to the sitecustomize this file shadows.
    try:
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec("sitecustomize", sys.path)
        if (
            spec is not None
            and spec.loader is not None
            and spec.origin
            and not same_dir(os.path.dirname(spec.origin))
        ):
            from importlib._bootstrap import module_from_spec

            module = module_from_spec(spec)
            sys.modules["sitecustomize"] = module
            spec.loader.exec_module(module)
    except Exception as exc:
        note("chained sitecustomize", exc)
        import traceback

        traceback.print_exc()


_probe_bootstrap()
del _probe_bootstrap
