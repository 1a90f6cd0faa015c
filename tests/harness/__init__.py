"""Test workloads and harness: session types the tests and their worker subprocesses load.

Imported as ``harness.*`` (``tests`` is on the path through pytest's ``pythonpath`` setting, and
on worker subprocesses' ``PYTHONPATH`` through `session_harness.worker_env`): no test edits
``sys.path``.
"""
