"""``kgzsl serve --port``: a usage error outside 1..65535, a one-line error when the port is in use."""

from __future__ import annotations

import logging
import socket

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")

from kgzsl.cli import build_parser, main  # noqa: E402


@pytest.mark.parametrize("port", ["70000", "99999", "65536", "0", "-1", "http"])
def test_a_port_outside_the_tcp_range_is_a_usage_error(port, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve", "runs/x", "--port", port])
    assert info.value.code == 2
    assert f"kgzsl serve: error: argument --port: must be an integer in 1..65535, got {port}" in capsys.readouterr().err


def test_the_ends_of_the_tcp_range_are_ports():
    assert [build_parser().parse_args(["serve", "runs/x", "--port", p]).port for p in ("1", "65535")] == [1, 65535]


def test_a_port_in_use_is_a_one_line_error_before_anything_is_served(tmp_path, capsys, caplog):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with caplog.at_level(logging.INFO, logger="kgzsl"):  # tmp_path is no run: the port is checked first
            assert main(["serve", str(tmp_path), "--port", str(port), "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == \
        [f"kgzsl serve: error: port {port} on 127.0.0.1 is in use; pick another with --port"]
    assert "serving" not in caplog.text


def test_a_free_port_passes_the_check():
    from kgzsl.serve.server import _check_port

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _check_port("127.0.0.1", port)
