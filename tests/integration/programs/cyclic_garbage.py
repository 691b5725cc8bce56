"""Make cyclic garbage so the collector has work."""

import gc


class Node:
    def __init__(self):
        self.me = self
        self.payload = [0] * 10


for _ in range(30):
    for _ in range(20000):
        Node()
    gc.collect()
print("done")
