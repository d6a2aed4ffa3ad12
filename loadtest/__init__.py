"""The load runtime: real processes driven by Locust HTTP traffic.

Nothing here imports Locust at import time: Locust monkey-patches the standard library with
gevent when it is imported, so it only ever runs in processes of its own
(`python -m loadtest.generator`), started by `loadtest.traffic.run_traffic`.
"""
