"""The agent's configuration: what ``probe doctor`` passes in ``PROBE_AGENT``, and the defaults.

Standard library only, like the rest of the agent (probe.agent.runtime).
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from typing import Any

DEFAULT_LAG_MS = 20.0
ENV_CONFIG = "PROBE_AGENT"
DEFAULT_STACK_HZ = 100
# DataLoader workers sample their stacks more slowly: their timing comes from the fetch hook, and
# every wake-up of an agent thread costs its process a GIL handoff, which on a machine with no
# idle core stalls the worker until the agent thread is scheduled (measured on 2 cores: 10 Hz in
# two workers cost the training loop about 4 %).
DEFAULT_HELPER_STACK_HZ = 5
# The stack rate adapts to what sampling costs the program (see probe.collectors.stacks.Pacer):
# the sampler's GIL wait and its thread's CPU (wake-up, sample, flushes) are kept within this
# share of the time between samples, and the rate does not go below MIN_PACED_HZ (or the
# configured rate, if lower). 1 %, half the overhead budget of the whole tool (2 %): a round holds
# the GIL for most of its CPU, so a thread that comes back from C code for it waits up to that
# long, and the stacks must leave room for the hooks, the other processes' agents and the outside
# sampler. Where a wake-up is cheap (~50 us of CPU a round) the full 100 Hz stays inside it; on a
# VM where a round costs ~250 us it comes down to ~40 Hz, and lower while the program holds the
# GIL.
DEFAULT_STACK_BUDGET = 0.01
MIN_PACED_HZ = 10.0
DEFAULT_FLUSH_MS = 200
MAX_ERRORS = 50  # agent_error events written per process; later ones are only counted


def config_from_env() -> dict[str, Any] | None:
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(config, dict) or not os.path.isdir(str(config.get("dir", ""))):
        return None
    return config
