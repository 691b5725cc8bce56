#!/usr/bin/env bash
# A shell script that runs Python, as training launchers often are.
set -e
"${PYTHON:-python}" -c 'import probe, time
for _ in range(20):
    time.sleep(0.01)
    probe.step()
print("python from bash done")'
