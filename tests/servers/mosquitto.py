"""The MQTT broker fixtures: Debian's mosquitto (`bench.harness.mosquitto.Mosquitto`).

`mosquitto` (anonymous, one per session), `mosquitto_auth` (user "streamer", password
"s3cret-pw"), `mosquitto_tls` (mqtts:// with a certificate authority of its own), and
`own_mosquitto` (one per test, to kill). Use them from a conftest::

    from servers.mosquitto import mosquitto, mosquitto_auth, own_mosquitto  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.harness.mosquitto import PASSWORD, USER, Mosquitto

__all__ = [
    "PASSWORD", "USER", "Mosquitto", "mosquitto", "mosquitto_auth", "mosquitto_tls",
    "own_mosquitto",
]  # fmt: skip


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory) -> Iterator[Mosquitto]:
    """An anonymous broker for the whole session."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def mosquitto_auth(tmp_path_factory) -> Iterator[Mosquitto]:
    """A broker that only lets in `USER` with `PASSWORD`."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto-auth"), USER, PASSWORD)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def mosquitto_tls(tmp_path_factory) -> Iterator[Mosquitto]:
    """A broker that speaks TLS only (mqtts://), its certificate signed by its own authority
    (`ca_file`)."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto-tls"), tls=True)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_mosquitto(tmp_path) -> Iterator[Mosquitto]:
    """A broker of the test's own, to stop and start again."""
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Mosquitto(folder)
    broker.start()
    yield broker
    broker.stop()
