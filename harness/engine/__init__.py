"""The worker-side engine: the timing loop, the memory pass, device timers, CPU state and the run context.

Runs in every worker (local, on a board from the worker bundle, on a cluster node). May import the floor modules
(``harness.types``, ``stats``, ``protocol``, ``errors``, ``registry``), the standard library, numpy and psutil —
never torch, a launcher or anything host-side.
"""
