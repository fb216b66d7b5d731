"""A real MQTT broker for tests and benchmarks: Debian's mosquitto, on a free loopback port.

`bash scripts/setup.sh --test` installs it (`apt-get install mosquitto`). `Mosquitto` writes a
config of its own into a temporary folder (no system config is read), starts the broker,
waits until its port accepts connections, and can be killed and started again on the same
port (a broker that goes away mid-run). Anonymous clients are allowed unless a user and
password are given: then only that user is (a password file made with `mosquitto_passwd`).
Retained messages and persistent sessions survive a restart (persistence on, in the folder).

The tests' fixtures are in tests/servers/mosquitto.py; `bench/soak.py --mqtt` starts one too.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

FIX = "install it: `bash scripts/setup.sh --test` (or `apt-get install mosquitto`)"
STARTUP_TIMEOUT_S = 10.0
USER, PASSWORD = "streamer", "s3cret-pw"


def _binary(name: str, folder: str) -> str:
    found = shutil.which(name) or shutil.which(f"{folder}/{name}")
    if found is None:
        raise RuntimeError(f"an MQTT broker needs Debian's mosquitto ({name} not found); {FIX}")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A certificate authority and a server certificate it signed for 127.0.0.1/localhost:
    (ca.pem, server.pem, server.key) in `folder`."""
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    key, request, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    names = folder / "names.ext"
    names.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")
    openssl = shutil.which("openssl") or "openssl"
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         "/CN=streamer test CA", "-keyout", ca_key, "-out", ca],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key,
         "-out", request],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-extfile", names, "-out", cert],
    ]  # fmt: skip
    for step in steps:
        subprocess.run([openssl, *map(str, step)], check=True, capture_output=True)
    return ca, cert, key


class Mosquitto:
    """One mosquitto broker on 127.0.0.1.

    Args:
        folder: where its config, password file, persistence and log go.
        user, password: the one user allowed; None for anonymous clients.
        tls: listen with TLS only (mqtts://), with a certificate for 127.0.0.1 and localhost
            signed by a certificate authority of its own, made here with `openssl`
            (`ca_file`: that authority's PEM, for the clients).
    """

    def __init__(
        self, folder: Path, user: str | None = None, password: str | None = None,
        tls: bool = False,
    ) -> None:  # fmt: skip
        self.folder = folder
        self.port = _free_port()
        self.user, self.password = user, password
        self.tls = tls
        self.ca_file: Path | None = None
        self.process: subprocess.Popen | None = None
        # As root, mosquitto drops to its own user unless told to stay: then it could not read
        # the files here.
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {folder}/",
            f"log_dest file {folder / 'broker.log'}",
        ]
        if user is None:
            lines.append("allow_anonymous true")
        else:
            passwords = folder / "passwords"
            subprocess.run([_binary("mosquitto_passwd", "/usr/bin"), "-b", "-c", str(passwords),
                            user, password], check=True, capture_output=True)  # fmt: skip
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        if tls:
            self.ca_file, cert, key = _certificates(folder)
            lines += [f"cafile {self.ca_file}", f"certfile {cert}", f"keyfile {key}"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The broker's mqtt:// (mqtts:// with TLS) URL, with credentials when given."""
        auth = f"{user}:{password}@" if user is not None else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections."""
        binary = _binary("mosquitto", "/usr/sbin")
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace")
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"mosquitto did not listen on port {self.port} within {STARTUP_TIMEOUT_S} s"
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (SIGTERM saves its retained messages; SIGKILL: a crash)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()
        self.process = None

    def restart_forgetting(self) -> None:
        """Stop the broker, delete its saved state and start it again: a broker restarted
        without persistence, which has lost every retained message."""
        self.stop()
        for saved in self.folder.glob("*.db"):
            saved.unlink()
        self.start()
