"""Fixtures of the watch tests: a real MQTT broker (Debian's mosquitto)."""

from servers.mosquitto import mosquitto, mosquitto_auth, mosquitto_tls, own_mosquitto  # noqa: F401
