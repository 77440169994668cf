"""A guard that refuses every connection beyond loopback."""

import ipaddress
import socket

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


def install() -> None:
    """Route every socket connect through the loopback check."""
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex


def uninstall() -> None:
    """Restore the unguarded socket connects."""
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
