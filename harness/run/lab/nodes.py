"""Joining a lab and checking its nodes before any job: the cluster answers, every node runs this harness's code and
Python, a local target is pinned to a node's measuring CPUs, and no SSH board is reached by two lanes."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from harness.config.cluster import ClusterSettings
from harness.errors import HarnessInputError
from harness.launch.cluster import BUILD_RESOURCE, TARGET_PREFIX, node_identity, ray_module
from harness.types import TargetProfile


def join(cluster: ClusterSettings) -> Any:
    """Join the Ray cluster ``cluster`` names; a one-line error when there is none."""
    ray = ray_module()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import logging

    if cluster.address != "auto":
        check_listening(cluster.address)
    here = os.getcwd()
    try:
        # Ray adds the driver's current folder to every worker's sys.path: from a checkout, nodes would import
        # the driver's harness (where that path exists) instead of their own, and the version check would
        # check nothing. Joined from an empty folder, each node runs the harness installed there.
        os.chdir(_neutral_dir())
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR,
                 namespace="edge-harness")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HarnessInputError(f"cannot join the Ray cluster at {cluster.address}: {first} (start one "
                                "with `harness node start --head --targets …`)") from None
    finally:
        os.chdir(here)
    return ray


def _neutral_dir() -> str:
    import tempfile

    folder = Path(tempfile.gettempdir()) / "edge-harness-driver"
    folder.mkdir(exist_ok=True)
    return str(folder)


def check_nodes(ray: Any, identity: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
    """Every live node that declares lab resources, checked against this harness before any job."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and any(
        k.startswith(TARGET_PREFIX) or k == BUILD_RESOURCE for k in n.get("Resources", {}))]
    identify = ray.remote(num_cpus=0)(node_identity)
    refs = [identify.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in nodes]
    answered = []
    for node, answer in zip(nodes, answers(ray, refs, timeout_s)):
        if isinstance(answer, str):  # a node dying or gone that Ray still lists: left out, said so
            print(f"lab: node {node['NodeManagerAddress']} ({node['NodeID'][:12]}) left out: it did not answer "
                  f"the version check ({answer})", file=sys.stderr)
        else:
            answered.append((node, answer))
    for node, theirs in answered:
        differs = mismatch(theirs, identity)
        if differs:
            raise HarnessInputError(
                f"node {theirs['hostname']} ({node['NodeManagerAddress']}) runs {differs}: install "
                "the same harness and Python on every node before running the suite there")
    return [n for n, _ in answered]


def first_line(exc: BaseException) -> str:
    """``Type: message`` of an exception, its first line only."""
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def mismatch(theirs: dict[str, Any], mine: dict[str, Any]) -> str:
    """How a node's harness and Python differ from this process's ('' when they are the same)."""
    differs = [f"{what} {theirs.get(key)} (here {mine[key]})" for key, what in
               (("harness_version", "edge-harness"), ("python", "Python")) if theirs.get(key) != mine[key]]
    if not differs and theirs.get("code_digest") != mine["code_digest"]:
        differs.append("other harness code (a different checkout or local changes)")
    return "; ".join(differs)


def answers(ray: Any, refs: list[Any], timeout_s: float) -> list[Any]:
    """Each ref's value, or a short reason (a string) for one that failed or did not come within ``timeout_s``."""
    ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    out: list[Any] = []
    for ref in refs:
        try:
            out.append(ray.get(ref, timeout=0.1))
        except ray.exceptions.GetTimeoutError:
            out.append(f"no answer within {timeout_s:g} s")
        except ray.exceptions.RayError as exc:
            out.append(type(exc).__name__)
    return out


def check_listening(address: str, timeout_s: float = 5.0) -> None:
    """A one-line error when nothing answers at ``host:port`` (Ray itself would retry for many minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise HarnessInputError(f"--cluster {address}: expected host:port of the Ray head (or 'auto')")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise HarnessInputError(f"cannot join the Ray cluster at {address}: nothing answers there "
                                f"({exc.strerror or type(exc).__name__}); start its head with `harness node start "
                                "--head`") from None


def with_node_cpus(target: TargetProfile, identity: dict[str, Any]) -> TargetProfile:
    """A local target measured on a node with reserved measuring CPUs is pinned there (threads at most as many)."""
    cpus = tuple(identity.get("measure_cpus") or ())
    if target.reach != "local" or not cpus:
        return target
    threads = min(target.threads, len(cpus)) if target.threads else len(cpus)
    return dataclasses.replace(target, cpu_affinity=cpus, threads=threads)


LOOPBACK_HOSTS = ("localhost", "127.", "::1", "[::1]")
"""Hosts that name each node's own machine: a board there is told apart by its node's address too."""


def board_key(lane: dict[str, Any]) -> str:
    """The board a lane measures, as ``host:port`` (its SSH user left out: one board, whoever logs in); a loopback
    host is qualified by the lane's node address. '' for a lane measuring no board (a local or emulated target)."""
    board = str(lane.get("board") or "")
    if not board:
        return ""
    where = board.rpartition("@")[2].lower()
    if where.startswith(LOOPBACK_HOSTS):
        return f"{where} on {lane.get('node_ip') or lane.get('node') or '?'}"
    return where


def refuse_shared_boards(lanes: list[dict[str, Any]]) -> None:
    """A one-line error when two lanes (``LaneState.describe()``) measure the same SSH board: two nodes declaring
    it, or two targets naming it, would measure it at once."""
    seen: dict[str, dict[str, Any]] = {}
    for lane in lanes:
        key = board_key(lane)
        if not key:
            continue
        if key in seen:
            first = seen[key]

            def who(x: dict[str, Any]) -> str:
                return (f"node {x.get('node', '?')} ({x.get('node_ip', '?')}, {str(x.get('node_id', ''))[:12]}) as "
                        f"target {x.get('target', '?')}")

            raise HarnessInputError(
                f"board {key} is reached by two lanes, {who(first)} and {who(lane)}: they would measure it at "
                f"once; declare it on one node, as one target (harness node start --targets …)")
        seen[key] = lane
