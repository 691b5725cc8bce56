"""Start another Python process with subprocess, as launchers and tools do."""

import subprocess
import sys

code = "import probe, time\nfor _ in range(10):\n    time.sleep(0.01)\n    probe.step()\n"
subprocess.run([sys.executable, "-c", code], check=True)
print("parent done")
