"""MQTT and Home Assistant: the run's events on a broker, its entities by discovery.

`MqttConfig` is `--mqtt URL` and its options; `MqttPublisher` the observer that publishes
(`streamer.run_setup.observers_from_config` makes it from the run's configuration). aiomqtt, the
`mqtt` extra, is imported only when a publisher connects.
"""

from streamer.watch.mqtt.options import MqttConfig
from streamer.watch.mqtt.publisher import MqttPublisher

__all__ = ["MqttConfig", "MqttPublisher"]
