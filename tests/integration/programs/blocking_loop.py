"""An asyncio loop whose handler blocks it with synchronous sleeps."""

import asyncio
import time


async def handler():
    for _ in range(15):
        await asyncio.sleep(0.01)
        time.sleep(0.06)


asyncio.run(handler())
print("done")
