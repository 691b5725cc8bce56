"""host-sync-stalls: the same kind of loop, reading its metrics back to the host every step.

After every step the loop calls ``loss.item()`` for a running mean and copies the predictions
to the host (``.cpu()``) to update a confusion matrix and per-class recall on the CPU, a common
way of keeping training metrics. Each of those calls waits until the GPU has finished the
step, so the GPU's queue runs dry, and it then idles while the host computes the metrics and
launches the next step. The host-side metric work is sized from the GPU step measured at
start-up (about half of it, ``--metric-share``), so the pattern is the same on any GPU: the
host waits on the GPU for a large share of each step, and the GPU idles for another.

    probe doctor -- python examples/scenarios/gpu_host_sync.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from gpu_common import Model, autocast, device_of, finish, optimizer, paced, parser
from torch import nn


def metrics(pred: np.ndarray, labels: np.ndarray, classes: int, rounds: int) -> float:
    """A confusion matrix and macro recall on the host, ``rounds`` times over (bootstrap
    resamples of the batch, as a run that reports confidence intervals would)."""
    rng = np.random.default_rng(0)
    recall = 0.0
    for _ in range(rounds):
        pick = rng.integers(0, len(pred), len(pred))
        confusion = np.bincount(
            labels[pick] * classes + pred[pick], minlength=classes * classes
        ).reshape(classes, classes)
        per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
        recall += float(per_class.mean())
    return recall / max(rounds, 1)


def main() -> None:
    p = parser("Train while reading metrics back to the host every step.", seconds=25.0)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--classes", type=int, default=256)
    p.add_argument(
        "--metric-share",
        type=float,
        default=0.5,
        help="host metric work per step, as a share of the GPU's step time measured at start",
    )
    args = p.parse_args()
    device = device_of(args)
    if args.tiny:
        args.dim, args.blocks, args.tokens, args.classes = 64, 2, 256, 10

    torch.manual_seed(0)
    model = Model(args.dim, args.blocks, args.classes).to(device)
    opt = optimizer(model, device)
    criterion = nn.CrossEntropyLoss()
    g = torch.Generator(device=device).manual_seed(1)
    xs = torch.randn(8, args.tokens, args.dim, device=device, generator=g)
    ys = torch.randint(0, args.classes, (8, args.tokens), device=device, generator=g)

    def step(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = xs[i % len(xs)], ys[i % len(ys)]
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            logits = model(x)
            loss = criterion(logits, y)
        loss.backward()
        opt.step()
        return loss, logits

    # start-up: how long a step takes on this device, and one round of the metrics on the host
    for i in range(3):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(10):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    gpu_step = (time.perf_counter() - t) / 10
    labels_host = ys[0].cpu().numpy()
    t = time.perf_counter()
    metrics(labels_host, labels_host, args.classes, 1)
    one_round = max(time.perf_counter() - t, 1e-6)
    rounds = max(1, round(args.metric_share * gpu_step / one_round))
    print(
        f"step {gpu_step * 1000:.1f} ms on {device}; {rounds} metric rounds of "
        f"{one_round * 1000:.2f} ms on the host per step"
    )

    start = time.perf_counter()
    steps = 0
    running = 0.0
    for i in paced(args):
        loss, logits = step(i)
        running = 0.98 * running + 0.02 * loss.item()  # waits for the GPU
        pred = logits.argmax(dim=1).cpu().numpy()  # and so would this
        recall = metrics(pred, ys[i % len(ys)].cpu().numpy(), args.classes, rounds)
        steps += 1
        if steps % 100 == 0:
            print(f"step {steps} loss {running:.4f} recall {recall:.3f}", flush=True)
    finish(device, start, steps)


if __name__ == "__main__":
    main()
