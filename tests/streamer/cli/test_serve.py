"""`streamer serve --archive DIR`: its options are the viewer's own, and bad input is a clear
error with no traceback (the command serving a page is tested in
tests/streamer/watch/web/test_web_search_browser.py)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from streamer.archive import Archive, EncoderSpec
from streamer.archive.moments import Moment
from streamer.cli.flags import help_text
from streamer.cli.main import build_parser, main
from streamer.cli.options import by_key


def _archive(tmp_path, tiny_encoder):
    arch = tmp_path / "arch"
    writer = Archive.create(arch, EncoderSpec.of(tiny_encoder))
    writer.writer().put(Moment("cam", 0.0, 1e9, np.ones(64, np.float32) / 8.0))
    writer.close()
    return arch


def test_serve_takes_the_viewers_own_address_and_token_options():
    parser = build_parser()
    args = parser.parse_args(["serve", "--archive", "a", "--serve", "0.0.0.0:9000",
                              "--serve-token", "s3"])  # fmt: skip
    assert (args.serve, args.serve_token, args.archive) == ("0.0.0.0:9000", "s3", "a")
    args = parser.parse_args(["serve", "--archive", "a"])
    assert args.serve is None and args.serve_token is None  # 127.0.0.1:8080, no token
    commands = next(a for a in parser._actions if a.dest == "command")
    flags = {a.option_strings[0]: a.help for a in commands.choices["serve"]._actions
             if a.option_strings}  # fmt: skip
    declared = by_key()
    assert flags["--serve-token"] == help_text(declared["serve-token"])  # declared once
    assert flags["--serve"] == help_text(declared["serve"])
    assert flags["--device"] == help_text(declared["device"])


def test_a_bad_device_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--archive", "a", "--device", "gpu7"])
    assert caught.value.code == 2 and "argument --device" in capsys.readouterr().err


@pytest.mark.parametrize("address", ["nope", "host:99999"])
def test_a_bad_address_is_a_usage_error_naming_the_flag(address, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--archive", "a", "--serve", address])
    assert caught.value.code == 2
    assert "argument --serve: must be [HOST:]PORT" in capsys.readouterr().err


def test_a_missing_archive_is_an_error_naming_it(tmp_path, capsys):
    assert main(["serve", "--archive", str(tmp_path / "none"), "--serve", "0"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "none") in err and "Traceback" not in err


def test_an_empty_token_is_refused(tmp_path, capsys, tiny_encoder):
    arch = _archive(tmp_path, tiny_encoder)
    assert main(["serve", "--archive", str(arch), "--serve", "0", "--serve-token", " "]) == 2
    assert "--serve-token must not be empty" in capsys.readouterr().err


def test_a_port_in_use_is_an_error_naming_it(tmp_path, capsys, tiny_encoder):
    arch = _archive(tmp_path, tiny_encoder)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--archive", str(arch), "--serve", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--serve port" in err
