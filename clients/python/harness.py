"""What the Python client suite needs around the calls: stubs generated from the contract, and a
real `suppressd serve` on a free loopback port with a data directory of its own."""

from __future__ import annotations

import importlib.resources
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROTO_DIR = REPO / "proto"
GEN_DIR = HERE / "gen"
CONTRACT = "suppression/v1/suppression.proto"
# The files the contract imports from this repository: each needs its own generated module.
CONTRACT_IMPORTS = ["suppression/v1/bounce_message.proto"]


def generate_stubs() -> None:
    """Compiles the contract with grpcio-tools into `gen/` (not committed) and makes it
    importable as `suppression.v1.suppression_pb2` / `suppression_pb2_grpc`."""
    from grpc_tools import protoc

    if GEN_DIR.exists():
        shutil.rmtree(GEN_DIR)
    GEN_DIR.mkdir()
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={GEN_DIR}",
        f"--pyi_out={GEN_DIR}",
        f"--grpc_python_out={GEN_DIR}",
        CONTRACT,
        *CONTRACT_IMPORTS,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR / CONTRACT}")
    if str(GEN_DIR) not in sys.path:
        sys.path.insert(0, str(GEN_DIR))


def server_binary() -> Path:
    """`SUPPRESSD_BIN`, else the debug build under `CARGO_TARGET_DIR` or the repository's
    `target/`. A missing binary is an error, never a skip: build it first."""
    given = os.environ.get("SUPPRESSD_BIN")
    if given:
        path = Path(given)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
        if not target.is_absolute():
            target = REPO / target
        path = target / "debug" / "suppressd"
    if not path.is_file():
        raise RuntimeError(
            f"no suppressd binary at {path}: run `cargo build --bin suppressd` "
            "(or set SUPPRESSD_BIN)"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `suppressd serve` process; `address` is `127.0.0.1:<port>`."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="suppressd-py-"))
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, attempts: int = 3, timeout: float = 60.0) -> None:
        binary = server_binary()
        for _ in range(attempts):
            # The server does not report the port of `--listen 127.0.0.1:0`: pick one that is
            # free now, and pick again if another process takes it before the server does.
            self.address = f"127.0.0.1:{free_port()}"
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    [
                        str(binary),
                        "serve",
                        "--listen",
                        self.address,
                        "--data-dir",
                        str(self.data_dir / "data"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                )
            if self._wait_serving(timeout):
                return
            self.stop(remove=False)
        raise RuntimeError(f"suppressd did not become SERVING; its log:\n{self.log()}")

    def _wait_serving(self, timeout: float) -> bool:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    return False  # exited: most likely the port was taken meanwhile
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return True
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, remove: bool = True) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if remove:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)
