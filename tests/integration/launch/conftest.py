"""Fixtures for the launcher's integration tests: a real sshd on 127.0.0.1, tiny datasets."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from minivess.serving.server import free_port

#: What CI must install for the sshd test (Debian/Ubuntu).
SSHD_INSTALL = "apt-get install -y --no-install-recommends openssh-server"


@dataclass
class Sshd:
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    fake_bin: Path


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A real OpenSSH server on a free loopback port, with its own host key and one authorized
    key, both generated here. The session PATH starts with ``fake_bin`` (set by sshd's
    ``SetEnv``) so a test can put an ``nvidia-smi`` there: this machine has no GPU."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).is_file() or not shutil.which("ssh-keygen") or not shutil.which("ssh"):
        pytest.skip(f"sshd/ssh not installed (CI: {SSHD_INSTALL})")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True
        )
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    fake_bin = d / "bin"
    fake_bin.mkdir()
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        f"PidFile {d / 'sshd.pid'}\nSetEnv PATH={fake_bin}:/usr/local/bin:/usr/bin:/bin\n"
    )
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        # Root sshd needs its privilege-separation dir (systemd creates it on a booted host).
        Path("/run/sshd").mkdir(mode=0o755)
    host_pub = (d / "host_key.pub").read_text().split()
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    log = (d / "sshd.log").open("w")
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not listen within 15 s")
                time.sleep(0.1)
        yield Sshd(port, getpass.getuser(), d / "client_key", known, fake_bin)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
