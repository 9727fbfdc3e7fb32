"""Free ports come from outside the range the kernel gives outgoing connections."""

import socket

from consortium_lab.apps import ports


def test_a_free_port_is_bindable_and_outside_the_ephemeral_range():
    low, high = ports._ephemeral()
    for _ in range(20):
        port = ports.free_port()
        assert not low <= port <= high
        assert ports.LOWEST <= port <= 65535
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_free():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not ports.port_is_free(sock.getsockname()[1])


def test_without_the_proc_file_linux_s_default_range_is_avoided(monkeypatch, tmp_path):
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports._ephemeral() == (32768, 60999)
    assert not 32768 <= ports.free_port() <= 60999
