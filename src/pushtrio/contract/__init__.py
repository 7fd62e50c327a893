"""The contract: what flows between the stages, with no I/O.

``records`` (what a source reads and a publisher writes), ``notification`` (the
message and its validation), ``outcome`` (exactly one per record), ``delays`` (the
delay topics and their headers), ``dead_letter`` (the letter format) and
``errors`` (the exception tree). Every other package imports these; they import
nothing of pushtrio outside this folder.
"""
