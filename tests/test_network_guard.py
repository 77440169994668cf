import socket

import pytest

from tests.support.network import NetworkAccessError


def test_non_loopback_connections_are_refused():
    with socket.socket() as sock, pytest.raises(NetworkAccessError, match="192.0.2.1"):
        sock.connect(("192.0.2.1", 443))


def test_loopback_connections_pass_the_guard():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())
