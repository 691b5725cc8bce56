"""probe in Jupyter, in a real kernel: a notebook executed headlessly (nbclient, ipykernel) that
loads the extension, idles, records a cell with %%probe (torch imported and a DataLoader run in
it) and a block with probe.profile(), and shows both inline."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from probe.analysis.diagnosis import VERDICTS
from probe.session.reader import Session

pytestmark = pytest.mark.slow

nbformat = pytest.importorskip("nbformat", reason="pip install 'probe-doctor[notebook]'")
nbclient = pytest.importorskip("nbclient", reason="pip install 'probe-doctor[notebook]'")

CELL = """%%probe --name cell
import time
import torch
from torch.utils.data import DataLoader, Dataset
imported = time.monotonic_ns()

class Slow(Dataset):
    def __len__(self):
        return 96
    def __getitem__(self, i):
        time.sleep(0.004)
        return torch.full((16,), float(i))

model = torch.nn.Linear(16, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for _ in range(3):
    for batch in DataLoader(Slow(), batch_size=8, num_workers=2):
        loss = model(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
print("imported at", imported)
"""

BLOCK = """import probe
with probe.profile(name="block") as run:
    total = sum(i * i for i in range(3_000_000))
print(run.diagnosis["run"]["duration_s"])
run
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    work = tmp_path_factory.mktemp("notebook")
    kernels = work / "jupyter" / "kernels" / "probe-test"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "probe test",
                "language": "python",
            }
        )
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext probe"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(2)  # the kernel idles: not recorded"),
        nbformat.v4.new_code_cell(CELL),
        nbformat.v4.new_code_cell(BLOCK),
    ]
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(work / "jupyter"))
    mp.setenv("PROBE_NO_OPEN", "1")
    mp.delenv("PROBE_AGENT", raising=False)
    try:
        client = nbclient.NotebookClient(
            nb,
            kernel_name="probe-test",
            timeout=300,
            resources={"metadata": {"path": str(work)}},
        )
        client.execute()
    finally:
        mp.undo()
    (work / "executed.ipynb").write_text(nbformat.writes(nb))
    return nb, work


def html_outputs(cell: Any) -> list[str]:
    return [
        o["data"]["text/html"]
        for o in cell.outputs
        if o.get("output_type") in ("display_data", "execute_result") and "text/html" in o["data"]
    ]


def test_the_cell_magic_shows_the_verdict_and_the_report(executed: tuple[Any, Path]) -> None:
    nb, work = executed
    cell = nb.cells[2]
    assert not [o for o in cell.outputs if o.get("output_type") == "error"]
    (shown,) = html_outputs(cell)
    category = re.search(r"<b>probe: ([a-z-]+)", shown)
    assert category is not None and category[1] in VERDICTS
    iframe = re.search(r'<iframe srcdoc="([^"]*)"', shown)
    assert iframe is not None
    page = html.unescape(iframe[1])
    assert page.startswith("<!DOCTYPE html>") and "Bokeh" in page
    session = Session(work / ".probe" / "cell")
    assert session.meta["kind"] == "profile"
    diagnosis = json.loads((work / ".probe" / "cell" / "diagnosis.json").read_text())
    assert diagnosis["category"] == category[1] == "input-bound"
    assert (work / ".probe" / "cell.html").read_text() == page


def test_the_cell_is_judged_alone_and_its_imports_are_start_up(
    executed: tuple[Any, Path],
) -> None:
    nb, work = executed
    session = Session(work / ".probe" / "cell")
    diagnosis = json.loads((work / ".probe" / "cell" / "diagnosis.json").read_text())
    printed = "".join(
        o.get("text", "") for o in nb.cells[2].outputs if o["output_type"] == "stream"
    )
    imported = int(re.search(r"imported at (\d+)", printed)[1])  # type: ignore[index]
    imports_done_s = (imported - session.start_ns) / 1e9
    assert imports_done_s > 0  # torch was imported inside the recorded cell
    window = diagnosis["window"]
    assert window[0] >= imports_done_s  # the analysed window begins after the imports
    # the kernel's idle seconds before the cell are not part of the run
    assert diagnosis["run"]["duration_s"] < imports_done_s + 30
    workers = {int(p) for e in session.events_of("loader_iter") for p in e["workers"]}
    assert len(workers) == 6 and workers <= {f.pid for f in session.files if f.writer == "agent"}


def test_a_profile_block_renders_itself(executed: tuple[Any, Path]) -> None:
    nb, work = executed
    cell = nb.cells[3]
    assert not [o for o in cell.outputs if o.get("output_type") == "error"]
    result = next(o for o in cell.outputs if o["output_type"] == "execute_result")
    assert "<div class='probe-verdict'>" in result["data"]["text/html"]
    assert "<iframe srcdoc=" in result["data"]["text/html"]
    assert result["data"]["text/plain"].startswith("<probe run block: ")
    duration = float(
        "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
    )
    assert 0 < duration < 30
    assert Session(work / ".probe" / "block").meta["kind"] == "profile"
