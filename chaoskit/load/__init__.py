"""Load generation: Locust in a worker process, every request streamed back as a record.

    with Load(LoadSpec("http://127.0.0.1:30080", run_seconds=60)) as load:
        load.mark("kill one web pod")
        ...                                   # inject faults
        result = load.wait()
    measured = result.measured()              # records after the warm-up

Nothing imported from here imports Locust or gevent; :mod:`chaoskit.load.worker`
does, in its own process.
"""

from chaoskit.load.runner import Load, run_load
from chaoskit.load.spec import LoadError, LoadResult, LoadSpec, RequestRecord, StreamStats, WarmupFailed

__all__ = [
    "Load",
    "LoadError",
    "LoadResult",
    "LoadSpec",
    "RequestRecord",
    "StreamStats",
    "WarmupFailed",
    "run_load",
]
