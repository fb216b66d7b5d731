"""Fixtures of the watch tests: a real MQTT broker (Debian's mosquitto)."""

from servers.mosquitto import mosquitto, mosquitto_auth, own_mosquitto  # noqa: F401
