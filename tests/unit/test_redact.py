"""Secrets never reach a session: argv values, key=value pairs, URL credentials."""

from __future__ import annotations

import pytest

from probe.session.redact import allowed_env, redact_argv, redact_text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--api-key", "abc", "--lr", "0.1"], ["--api-key", "***", "--lr", "0.1"]),
        (["--token=abc"], ["--token=***"]),
        (["--hf_token", "hf_x"], ["--hf_token", "***"]),
        (["-password", "p"], ["-password", "***"]),
        (["--Secret-Name=s3"], ["--Secret-Name=***"]),
        (["--db-passwd", "x"], ["--db-passwd", "***"]),
        (["--auth-header", "Bearer x"], ["--auth-header", "***"]),
        (["--credentials-file", "/x"], ["--credentials-file", "***"]),
        (["WANDB_API_KEY=abc", "epochs=3"], ["WANDB_API_KEY=***", "epochs=3"]),
        (["model.key=1"], ["model.key=***"]),
        (
            ["--url", "https://user:pa55@example.com/x"],
            ["--url", "https://***@example.com/x"],
        ),
        (["s3://AKIA:SECRET@bucket/path"], ["s3://***@bucket/path"]),
        (["--src=https://h/x?token=abc&n=1"], ["--src=https://h/x?token=***&n=1"]),
        # A flag with a secret-looking name followed by another option: nothing to redact.
        (["--use-auth", "--epochs", "3"], ["--use-auth", "--epochs", "3"]),
        # Names that merely contain a secret word's letters but name no secret.
        (["--tokenizer", "gpt2", "--max-new-tokens", "64"], None),
        (["python", "train.py", "--epochs", "3"], None),
    ],
)
def test_redact_argv(argv: list[str], expected: list[str] | None) -> None:
    assert redact_argv(argv) == (argv if expected is None else expected)


def test_redact_text_keeps_plain_text() -> None:
    assert redact_text("no secrets here") == "no secrets here"
    assert redact_text("postgres://u:p@db:5432/x") == "postgres://***@db:5432/x"


def test_env_allow_list_only() -> None:
    env = {
        "OMP_NUM_THREADS": "8",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "AWS_SECRET_ACCESS_KEY": "x",
        "HOME": "/root",
        "RANK": "0",
    }
    assert allowed_env(env) == {"CUDA_VISIBLE_DEVICES": "0,1", "OMP_NUM_THREADS": "8", "RANK": "0"}
