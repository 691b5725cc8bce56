"""Do steps until interrupted; report how it ended."""

import signal
import sys
import time

import probe


def on_term(signum, frame):
    print(f"got signal {signum}", flush=True)
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGHUP, on_term)
print("ready", flush=True)
deadline = time.monotonic() + 60
try:
    while time.monotonic() < deadline:
        sum(i * i for i in range(20000))
        probe.step()
except KeyboardInterrupt:
    print("caught KeyboardInterrupt", flush=True)
    raise SystemExit(130) from None
print("never interrupted", flush=True)
