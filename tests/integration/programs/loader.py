"""A DataLoader with 2 workers (start method from argv) and a slow dataset."""

import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset


class Slow(Dataset):
    def __len__(self):
        return 160

    def __getitem__(self, i):
        time.sleep(0.004)
        return torch.full((16,), float(i))


if __name__ == "__main__":
    loader = DataLoader(Slow(), batch_size=8, num_workers=2, multiprocessing_context=sys.argv[1])
    model = torch.nn.Linear(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for batch in loader:
        loss = model(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("done", flush=True)
