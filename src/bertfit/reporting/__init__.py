"""What a saved model folder says, as one self-contained HTML page.

- ``report``: find and score the test rows, render the page, write it.
- ``analysis``: what scored rows say: per-class table, confusion, curves, reliability, mistakes.
- ``plots``: the page's matplotlib pictures, inlined as PNG.

Builds on the core (the model, its record, metrics) and ``data`` (reading a ``--data`` file).
"""
