"""A real SSH "board" for tests: Debian's OpenSSH sshd on 127.0.0.1 and a torch-free virtualenv.

    from sshd_board import sshd, board_python, ssh_home   # pytest fixtures (import them into a test module)

- `sshd` (session): `/usr/sbin/sshd -D` started by the test itself with a generated sshd_config, a fresh
  ed25519 host key and one authorized ed25519 user key, on a free port of 127.0.0.1 (password and
  keyboard-interactive auth off, as on a hardened board). Stopped at the end of the session.
- `board_python` (session): the board's Python. A plain `python -m venv --without-pip` (no system or
  host site-packages) into which the device side is installed the way a board gets it: a wheel of this
  checkout (`pip wheel --no-deps`, built from a copy of the sources) installed with `--no-deps --no-index`.
  Its runtime libraries are the host venv's own files, but ONLY numpy, onnxruntime, ai-edge-litert,
  opencv-python-headless, psutil and their declared dependencies: their top-level entries are symlinked into
  one folder that a .pth file adds to the board's sys.path. torch (and every other host library) is not on
  that path at all; the fixture checks that `import torch` fails there.
- `ssh_home` (function): a HOME with .ssh/{id_ed25519, known_hosts (the sshd's host key), config} so the
  code under test uses "the user's ~/.ssh" exactly as on a real machine; SSH_AUTH_SOCK is removed.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SSHD = Path("/usr/sbin/sshd")
BOARD_DISTRIBUTIONS = ("numpy", "onnxruntime", "ai-edge-litert", "opencv-python-headless", "psutil")
HOST_ONLY = ("torch", "torchvision", "torchao", "torch_pruning", "litert_torch", "onnx", "tensorflow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SSHServer:
    port: int
    user: str
    client_key: Path
    host_public_key: str
    log: Path
    proc: subprocess.Popen

    def url(self, python: str | None = None) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}" + (f"?python={python}" if python else "")

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}\n"


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecnn-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)


def start_sshd(root: Path, timeout: float = 15.0) -> SSHServer:
    """Start sshd on a free 127.0.0.1 port with generated keys under `root`; wait until it answers."""
    if not SSHD.is_file():
        pytest.fail("openssh-server is not installed (/usr/sbin/sshd); scripts/setup.sh installs it")
    root.mkdir(parents=True, exist_ok=True)
    host_key, user_key = root / "ssh_host_ed25519_key", root / "id_ed25519"
    _keygen(host_key)
    _keygen(user_key)
    shutil.copy(root / "id_ed25519.pub", root / "authorized_keys")
    user = os.environ.get("USER") or __import__("getpass").getuser()
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    config = root / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}",
        f"PidFile {root / 'sshd.pid'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "StrictModes no",  # the keys live in a pytest tmp dir, not a 0700 ~/.ssh
        "Subsystem sftp internal-sftp",
        "MaxSessions 50",
        "",
    ]))
    last = ""
    for _ in range(5):  # a free port can be taken by someone else before sshd binds it
        port, log = free_port(), root / "sshd.log"
        proc = subprocess.Popen([str(SSHD), "-D", "-f", str(config), "-p", str(port), "-E", str(log)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return SSHServer(port, user, user_key, (root / "ssh_host_ed25519_key.pub").read_text()
                                         .split(" edgecnn-test")[0].strip(), log, proc)
            except OSError:
                time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        last = (log.read_text() if log.exists() else "") + proc.stderr.read().decode(errors="replace")
    pytest.fail(f"sshd did not start: {last[-500:]}")


def stop_sshd(server: SSHServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


# ---------------------------------------------------------------- the torch-free board venv


def _requirements(dist: importlib.metadata.Distribution) -> list[str]:
    from packaging.requirements import Requirement

    names = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def board_packages(roots: tuple[str, ...] = BOARD_DISTRIBUTIONS) -> dict[str, set[str]]:
    """distribution -> top-level site-packages entries of `roots` and their runtime dependencies."""
    site = Path(sysconfig.get_paths()["purelib"])
    seen: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        tops = set()
        for f in dist.files or []:
            top = f.parts[0]
            if top not in ("..", "__pycache__") and (site / top).exists():
                tops.add(top)
        seen[key] = tops
        todo += _requirements(dist)
    return seen


def board_env() -> dict[str, str]:
    """The environment an SSH session gets: none of this test process's PYTHONPATH and friends."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


def make_board_venv(root: Path) -> Path:
    """Create the board venv under `root` (see the module docstring); return its python."""
    venv = root / "board-venv"
    subprocess.run([sys.executable, "-c", "import sys, venv; venv.create(sys.argv[1], with_pip=False)", str(venv)],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    shared = root / "board-libs"
    shared.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for dist, tops in board_packages().items():
        for top in tops:
            if top.split(".")[0].split("-")[0] in HOST_ONLY:
                raise AssertionError(f"{dist} would put host library {top} on the board")
            if not (shared / top).exists():
                (shared / top).symlink_to(site / top)
    board_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     check=True, capture_output=True, text=True, timeout=60,
                                     env=board_env()).stdout.strip())
    (board_site / "board_libs.pth").write_text(f"{shared}\n")
    # the device side as a wheel of this checkout, built from a copy (no build/ debris in the repo)
    src = root / "src"
    shutil.copytree(REPO / "edgecnn", src / "edgecnn", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "wheels"),
                          str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((root / "wheels").glob("edgecnn-*.whl"))
    subprocess.run(pip + ["--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    check = subprocess.run([str(python), "-c", "import importlib.util as u, edgecnn, onnxruntime, ai_edge_litert; "
                            "print(u.find_spec('torch') is None, edgecnn.__file__)"],
                           capture_output=True, text=True, timeout=120, cwd=root, env=board_env())
    assert check.returncode == 0, check.stderr
    no_torch, where = check.stdout.split()
    assert no_torch == "True", "torch is importable in the board venv"
    assert str(venv) in where, f"the board imports edgecnn from {where}, not its own install"
    return python


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    stop_sshd(server)


@pytest.fixture(scope="session")
def board_python(tmp_path_factory) -> Path:
    return make_board_venv(tmp_path_factory.mktemp("board"))


def write_ssh_home(home: Path, server: SSHServer, known: bool = True) -> Path:
    """HOME/.ssh as a user would have it: the key, known_hosts with the board's host key, a config."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700, exist_ok=True)
    shutil.copy(server.client_key, ssh / "id_ed25519")
    (ssh / "id_ed25519").chmod(0o600)
    (ssh / "known_hosts").write_text(server.known_hosts_line() if known else "")
    (ssh / "config").write_text("Host *\n  IdentitiesOnly yes\n  IdentityFile ~/.ssh/id_ed25519\n")
    return home


@pytest.fixture
def ssh_home(tmp_path, sshd, monkeypatch) -> Path:
    home = write_ssh_home(tmp_path / "home", sshd)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home
