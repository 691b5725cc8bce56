"""Write (or check) docs/verdicts/: ``python -m probe.report.recommendations DIR [--check]``.

The recommendation texts in this package are the source; each docs page is its text with the
thresholds filled in from the detectors' constants. ``--check`` writes nothing and exits 1 when a
page differs from what this would write.
"""

from __future__ import annotations

import sys
from pathlib import Path

from probe.files import write_atomic
from probe.report.recommendations import available, docs_page


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--check"]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    directory = Path(args[0])
    check = "--check" in argv
    stale = []
    wanted = {f"{verdict}.md": docs_page(verdict) for verdict in available()}
    for name, text in wanted.items():
        path = directory / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not check:
            write_atomic(path, text)
    extra = sorted(p.name for p in directory.glob("*.md") if p.name not in wanted)
    for name in stale:
        print(f"{'stale' if check else 'wrote'}: {directory / name}", file=sys.stderr)
    for name in extra:
        print(f"not a verdict: {directory / name}", file=sys.stderr)
    return 1 if (check and stale) or extra else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
