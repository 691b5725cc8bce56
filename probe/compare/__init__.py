"""probe compare: did the change help? Two sets of runs in, statistics, the same kinds of output.

sides.py     which sessions each side holds, and whether the two can be compared
measures.py  what is measured in each diagnosed run (its steps, CPU, memory, lag)
stats.py     the statistics: block bootstrap within runs, runs as units across them
compare.py   the comparison: one row per measure, the verdict change, the issues' moves
rounds.py    the mirrored order of ``probe compare --run``
words.py     every word compare writes
terminal.py, jsonout.py, html.py   the outputs
"""
