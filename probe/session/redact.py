"""Keep secrets out of sessions: command lines are redacted before they are stored anywhere.

Standard library only (the agent redacts the argv of the processes it runs in).

What is redacted, case-insensitively, where a name contains one of ``SECRET_WORDS``:
- the value of an option: ``--api-key VALUE``, ``--api-key=VALUE``, ``-password VALUE``;
- the value of a ``NAME=VALUE`` pair (environment-style assignments, ``key=value`` configs);
- credentials inside URLs (``scheme://user:password@host``) and secret query parameters
  (``?token=...``).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

SECRET_WORDS = ("token", "key", "secret", "password", "passwd", "auth", "credential")
REDACTED = "***"

# Environment variables worth keeping: they change how a training run uses the machine.
ENV_ALLOWLIST = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "NVIDIA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TORCH_NUM_THREADS",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "NODE_RANK",
    "MASTER_PORT",
    "PYTORCH_CUDA_ALLOC_CONF",
    "PYTHONHASHSEED",
    "PYTHONMALLOC",
    "PYTHONGC",
)

_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")
_QUERY_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#\s]+)=(?P<value>[^&;#\s]*)")
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)=(?P<value>.*)$", re.DOTALL)


# Name components that contain a secret word but name no secret (``--tokenizer gpt2``,
# ``--max-new-tokens 64``): redacting them would only make reports harder to read.
_BENIGN_PARTS = frozenset({"tokenizer", "tokenizers", "tokenize", "tokens", "keyboard"})
_NAME_PARTS = re.compile(r"[^a-z0-9]+")


def is_secret_name(name: str) -> bool:
    """Whether an option or variable name looks like it holds a secret."""
    parts = [p for p in _NAME_PARTS.split(name.lower()) if p and p not in _BENIGN_PARTS]
    return any(word in part for part in parts for word in SECRET_WORDS)


def redact_text(text: str) -> str:
    """Redact URL credentials and secret query parameters inside one string."""
    text = _URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)

    def _param(m: re.Match[str]) -> str:
        if is_secret_name(m.group("name")):
            return f"{m.group('sep')}{m.group('name')}={REDACTED}"
        return m.group(0)

    return _QUERY_PARAM.sub(_param, text)


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A copy of ``argv`` with secret values replaced by ``***``."""
    out: list[str] = []
    redact_next = False
    for arg in argv:
        arg = str(arg)
        if redact_next:
            redact_next = False
            if not arg.startswith("-") or arg == "-":
                out.append(REDACTED)
                continue
        if arg.startswith("-") and len(arg) > 1 and arg != "--":
            name, eq, value = arg.partition("=")
            if is_secret_name(name.lstrip("-")):
                if eq:
                    out.append(f"{name}={REDACTED}" if value else arg)
                else:
                    out.append(arg)
                    redact_next = True
                continue
            if eq:
                out.append(f"{name}={redact_text(value)}")
                continue
            out.append(arg)
            continue
        m = _ASSIGNMENT.match(arg)
        if m and is_secret_name(m.group("name")):
            out.append(f"{m.group('name')}={REDACTED}")
            continue
        out.append(redact_text(arg))
    return out


def allowed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Only the allow-listed environment variables, values redacted like any text."""
    return {k: redact_text(environ[k]) for k in ENV_ALLOWLIST if k in environ}
