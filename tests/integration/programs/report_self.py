"""Print what the program sees of itself as JSON, read stdin, and exit with the code given."""

import json
import os
import sys

data = sys.stdin.read() if "--stdin" in sys.argv else ""
print(
    json.dumps(
        {
            "argv": sys.argv,
            "cwd": os.getcwd(),
            "name": __name__,
            "stdin": data,
            "path0": sys.path[0],
            "threads": __import__("threading").active_count(),
            "omp": os.environ.get("OMP_NUM_THREADS"),
        }
    )
)
print("to stderr", file=sys.stderr)
code = next((int(a.split("=")[1]) for a in sys.argv if a.startswith("--exit=")), 0)
sys.exit(code)
