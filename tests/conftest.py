"""Suite-wide guards: nothing in the tests may reach beyond this machine."""

import ipaddress
import os
import socket

import pytest

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


class NetworkAccessError(RuntimeError):
    """Raised when code under test tries to reach a non-loopback address."""


def _check(address) -> None:
    if not isinstance(address, tuple):
        return  # unix sockets
    host = address[0]
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    raise NetworkAccessError(f"tests may not reach {address!r}: only loopback is allowed")


def _guarded_connect(self, address):
    _check(address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _check(address)
    return _connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """Every test runs with outbound connections restricted to loopback."""
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    yield
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
