"""A real Ray cluster on this machine for the lab tests: a head and nodes started with ``harness node start``
(each its own raylet), bound to this machine's address, usage reporting off, and torn down by process."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from harness.config.paths import PROJECT_ROOT
from tests.sshd import free_port


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("ray is not installed (pip install 'edge-harness[cluster]')")
    if shutil.which("ray", path=str(Path(sys.executable).parent)) is None:
        pytest.skip(f"the `ray` command is not beside {sys.executable}")


class RayLab:
    """``start_head`` / ``add_node`` start nodes declaring targets; ``kill_node`` kills one node's raylet and every
    process under it (a machine that died); ``stop`` ends every process of this cluster."""

    def __init__(self, env: dict[str, str]) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="ehray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.port = free_port()
        # Usage reporting off (no internet); a killed node is declared dead after ~3 s instead of ~30 s.
        self.env = dict(os.environ) | env | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                                             "RAY_health_check_period_ms": "1000",
                                             "RAY_health_check_timeout_ms": "1000",
                                             "RAY_health_check_failure_threshold": "3"}
        self.address = ""
        self.nodes: dict[str, str] = {}
        """node name → Ray node id"""

    def _start(self, name: str, args: list[str], env: dict[str, str] | None, ray_args: list[str]) -> str:
        before = set(self._node_ids())
        proc = subprocess.run([sys.executable, "-m", "harness", "node", "start", *args, "--", "--num-cpus=1",
                               *ray_args], capture_output=True, text=True, timeout=180, cwd=PROJECT_ROOT,
                              env=self.env | (env or {}))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = set(self._node_ids()) - before
            if new:
                self.nodes[name] = new.pop()
                return self.nodes[name]
            time.sleep(0.5)
        raise AssertionError(f"node {name} did not register")

    def _node_ids(self) -> list[str]:
        ids = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmd = proc.info["cmdline"] or []
            if cmd and cmd[0].endswith("raylet") and any(self.temp_dir in c for c in cmd):
                ids += [c.split("=", 1)[1] for c in cmd if c.startswith("--node_id=")]
        return ids

    def start_head(self, targets: str = "", build: bool = False, env: dict[str, str] | None = None) -> str:
        args = ["--head"] + (["--targets", targets] if targets else []) + (["--build"] if build else [])
        node = self._start("head", args, env, [f"--port={self.port}", f"--temp-dir={self.temp_dir}",
                                               "--include-dashboard=false"])
        self.address = f"{self._ip()}:{self.port}"
        return node

    def _ip(self) -> str:
        session = Path(self.temp_dir) / "session_latest" / "node_ip_address.json"
        if session.is_file():
            return json.loads(session.read_text()).get("node_ip_address", "127.0.0.1")
        import ray._private.services as services

        return services.get_node_ip_address()

    def add_node(self, name: str, targets: str = "", build: bool = False, env: dict[str, str] | None = None,
                 measure_cpus: str = "") -> str:
        args = ["--address", self.address] + (["--targets", targets] if targets else []) + \
            (["--build"] if build else []) + (["--measure-cpus", measure_cpus] if measure_cpus else [])
        return self._start(name, args, env, [])

    def raylet(self, name: str) -> psutil.Process:
        node_id = self.nodes[name]
        for proc in psutil.process_iter(["cmdline"]):
            if f"--node_id={node_id}" in (proc.info["cmdline"] or []) and proc.info["cmdline"][0].endswith("raylet"):
                return proc
        raise AssertionError(f"no raylet for node {name}")

    def kill_node(self, name: str) -> None:
        raylet = self.raylet(name)
        family = raylet.children(recursive=True) + [raylet]
        for proc in family:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(family, timeout=10)
        del self.nodes[name]

    def stop(self) -> None:
        ours = [p for p in psutil.process_iter(["cmdline"]) if any(self.temp_dir in c for c in p.info["cmdline"] or [])]
        family = {p.pid: p for p in ours}
        for p in ours:
            try:
                family.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.Error:
                pass
        for proc in family.values():
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(list(family.values()), timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
