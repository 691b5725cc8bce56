"""Output: renderers behind one interface (``renderer.py``: a diagnosis in, a document out).

``html`` (the page: ``page`` builds its ``model``, ``graphs``, ``verdicts`` and ``header`` fill
it), ``jsonout`` (``probe.diagnosis/1``), ``terminal`` (the summary after a run) and ``mdout``
(Markdown for a pull request or a CI summary); ``recommendations/`` holds one text per verdict.
"""
