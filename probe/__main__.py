"""``python -m probe``: the same command line as ``probe``."""

from probe.cli import run

if __name__ == "__main__":
    run()
