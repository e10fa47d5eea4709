"""The 台账 workbooks: a branch's run (cover, stages, attendance, commitments, history) and a
committee's summary of its branches, written in openpyxl's write-only mode (rows streamed to
disk, memory flat whatever the number of runs)."""
