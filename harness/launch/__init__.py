"""Launchers, host side: start a child (worker or prepare) and return its result — a local process, an SSH board,
an emulated arm64 rootfs, two workers in lockstep. They speak ``harness.protocol`` and know nothing of suites."""
