"""A real OpenSSH server on 127.0.0.1 for the SSH-target tests (throwaway host and user keys)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def require_sshd() -> None:
    if not Path(SSHD).exists() or not shutil.which("ssh-keygen"):
        pytest.skip("openssh-server is not installed (/usr/sbin/sshd): apt-get install openssh-server")
    if os.geteuid() != 0:
        pytest.skip("sshd with privilege separation needs root to start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


class Sshd:
    """Start with ``start()``; stop by PID with ``stop()`` (never by name)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        keygen(folder / "host_key")
        keygen(folder / "user_key")
        (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
        host_pub = (folder / "host_key.pub").read_text().split()
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.identity = folder / "user_key"
        self.config = folder / "sshd_config"
        self.config.write_text("\n".join([
            "ListenAddress 127.0.0.1", f"Port {self.port}", f"HostKey {folder / 'host_key'}",
            f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "Subsystem sftp internal-sftp", "",
        ]))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Sshd":
        subprocess.run(["install", "-d", "-m755", "/run/sshd"], check=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(self.config), "-E", str(self.folder / "sshd.log")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {(self.folder / 'sshd.log').read_text()}")

    def stop(self) -> None:
        """Kill the listener and every session it started: to the client, the board vanished."""
        import psutil

        if self.proc is None:
            return
        try:
            parent = psutil.Process(self.proc.pid)
            for child in parent.children(recursive=True):
                child.kill()
            parent.kill()
        except psutil.NoSuchProcess:
            pass
        self.proc.wait(timeout=10)
        self.proc = None

    def target_toml(self, name: str, python: str, workdir: Path, runtimes=("onnxruntime", "litert"),
                    known_hosts: Path | None = None, energy: bool = False) -> str:
        """A board profile over this sshd; ``energy``: with the modelled energy source (always available, so the
        energy window and sustained mode's per-window joules are measured on the board)."""
        listed = ", ".join(f'"{r}"' for r in runtimes)
        modelled = ['[energy]', 'sources = ["modelled"]', '[energy.power_model]', 'idle_w = 1.0',
                    'active_w_per_core = 2.0'] if energy else []
        return "\n".join([
            f'name = "{name}"', 'description = "loopback board over SSH"', 'arch = "x86_64"', 'reach = "ssh"',
            f"runtimes = [{listed}]", "threads = 1", "[ssh]", 'host = "127.0.0.1"', f"port = {self.port}",
            'user = "root"', f'identity_file = "{self.identity}"', f'known_hosts = "{known_hosts or self.known_hosts}"',
            f'python = "{python}"', f'workdir = "{workdir}"', "connect_timeout_s = 5", *modelled, "",
        ])
