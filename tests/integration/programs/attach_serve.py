"""A serving loop (asyncio) blocked now and then by synchronous work, running until a file appears;
then it says whether probe left a timer on its loop. Usage: attach_serve.py FINISH [--listen]
[--thread] (--thread: the loop runs in a worker thread, as some servers do)."""

import asyncio
import json
import os
import sys
import threading
import time


async def serve(finish):
    loop = asyncio.get_running_loop()
    print("ready", os.getpid(), flush=True)
    handled = 0
    while not os.path.exists(finish):
        await asyncio.sleep(0.01)
        time.sleep(0.03)  # a handler that blocks the loop
        handled += 1
    await asyncio.sleep(0.2)
    left = [h for h in loop._scheduled if not h.cancelled() and "_LagTimer" in repr(h)]
    return {"handled": handled, "probe_timers": len(left)}


def main():
    finish = sys.argv[1]
    if "--listen" in sys.argv:
        import probe

        probe.listen()
    if "--thread" in sys.argv:
        result = {}
        worker = threading.Thread(target=lambda: result.update(asyncio.run(serve(finish))))
        worker.start()
        worker.join()
    else:
        result = asyncio.run(serve(finish))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
