"""Run: the entry points. The CLI (parse, supervise a worker, render, exit code), the worker and its
pipeline (the only place that knows the order of the stages), and the Python API.
"""
