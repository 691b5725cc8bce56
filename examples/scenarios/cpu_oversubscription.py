"""CPU oversubscription: an actor-learner setup with far more busy threads than cores.

Two actor processes keep simulating batches of environments with a policy network (matrix
products), each with its own intra-op thread pool, and push rollout statistics to the learner.
The learner trains the value network in the main process and, "to go faster", asks torch for 8
intra-op threads. On a 2-core machine the learner's threads spend much of their time waiting
for a core.

    probe doctor -- python examples/scenarios/cpu_oversubscription.py
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import time

import torch
from torch import nn


def make_policy(obs_dim: int, hidden: int, act_dim: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(obs_dim, hidden),
        nn.Tanh(),
        nn.Linear(hidden, hidden),
        nn.Tanh(),
        nn.Linear(hidden, act_dim),
    )


def actor(rank: int, threads: int, out: mp.Queue, stop: mp.Event, obs_dim: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(100 + rank)
    policy = make_policy(obs_dim, 512, 16)
    dynamics = torch.randn(obs_dim + 16, obs_dim) / obs_dim**0.5
    state = torch.randn(2048, obs_dim)
    steps = 0
    with torch.no_grad():
        while not stop.is_set():
            action = torch.tanh(policy(state))
            state = torch.tanh(torch.cat([state, action], dim=1) @ dynamics)
            reward = -(state**2).mean(dim=1)
            steps += 1
            if steps % 20 == 0:
                try:
                    out.put_nowait((rank, steps, float(reward.mean())))
                except queue.Full:
                    pass


class Learner:
    def __init__(self, obs_dim: int, hidden: int, buffer_size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.obs = torch.randn(buffer_size, obs_dim, generator=g)
        self.ret = (self.obs[:, :8].sum(dim=1, keepdim=True)).tanh()
        self.value = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )
        self.opt = torch.optim.Adam(self.value.parameters(), lr=3e-4)

    def update(self, batch_size: int) -> float:
        idx = torch.randint(0, len(self.obs), (batch_size,))
        loss = nn.functional.smooth_l1_loss(self.value(self.obs[idx]), self.ret[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--actor-threads", type=int, default=4)
    ap.add_argument("--learner-threads", type=int, default=8)
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--obs-dim", type=int, default=128)
    args = ap.parse_args()

    torch.set_num_threads(args.learner_threads)
    torch.manual_seed(0)
    ctx = mp.get_context("fork")
    stats, stop = ctx.Queue(maxsize=1000), ctx.Event()
    actors = [
        ctx.Process(
            target=actor, args=(r, args.actor_threads, stats, stop, args.obs_dim), daemon=True
        )
        for r in range(args.actors)
    ]
    for p in actors:
        p.start()

    learner = Learner(args.obs_dim, 512, 50_000)
    rollouts, last_reward = 0, float("nan")
    t0 = time.time()
    for update in range(1, args.updates + 1):
        loss = learner.update(args.batch_size)
        while True:
            try:
                _, _, last_reward = stats.get_nowait()
                rollouts += 1
            except queue.Empty:
                break
        if update % 50 == 0:
            print(
                f"update {update}: value loss {loss:.4f}, actor reward {last_reward:.3f}, "
                f"{rollouts} rollout reports, {update / (time.time() - t0):.1f} updates/s",
                flush=True,
            )
    elapsed = time.time() - t0
    stop.set()
    # Drain the queue while the actors exit: a child blocks at exit until its queued items
    # are consumed.
    while any(p.is_alive() for p in actors):
        try:
            stats.get(timeout=0.1)
        except queue.Empty:
            pass
    for p in actors:
        p.join()
    print(f"learner done: {args.updates} updates in {elapsed:.1f}s")


if __name__ == "__main__":
    main()
