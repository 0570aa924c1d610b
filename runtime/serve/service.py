"""What `fer-edge` needs to run for months as a service: the --json rotation and --ha-discovery flags and their
checks, the systemd notifier, and the MQTT sink's start (with Home Assistant discovery when asked).
See docs/service.md. Kept apart from cli_args.py so the service options live in one place."""
from __future__ import annotations

import argparse

from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.serve.ha import DEFAULT_PREFIX

CONNECT_TIMEOUT_S = 10.0  # at start, how long to wait for the broker's answer before the run is refused


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("running as a service (docs/service.md)")
    g.add_argument("--json-max-mb", type=float, metavar="MB", help="rotate the --json file when it reaches MB "
                   "megabytes: FILE becomes FILE.1, FILE.1 becomes FILE.2... (default: never)")
    g.add_argument("--json-keep", type=int, default=5, metavar="N",
                   help="rotated --json files kept besides the live one (default 5; the oldest is deleted)")
    g.add_argument("--ha-discovery", nargs="?", const=DEFAULT_PREFIX, metavar="PREFIX",
                   help="announce this instance to Home Assistant through MQTT discovery under PREFIX "
                   f"(default {DEFAULT_PREFIX}); needs --mqtt")
    g.add_argument("--device-name", metavar="NAME", help="the device's name in Home Assistant, and the base of its "
                   "unique_ids (default: --mqtt-client-id, else fer-edge-<hostname>)")


def json_rotation(a: argparse.Namespace, opt: str = "json") -> dict:
    """The JsonLinesSink keywords for --json-max-mb/--json-keep, for the --json (or --visits) file; checked before
    any work starts."""
    if a.json_keep < 1:
        raise FerEdgeError(f"--json-keep must be 1 or more, found {a.json_keep}")
    if a.json_max_mb is None:
        return {}
    if not a.json_max_mb > 0:
        raise FerEdgeError(f"--json-max-mb must be above 0 megabytes, found {a.json_max_mb:g}")
    if not (a.json or getattr(a, "visits", None)):
        raise FerEdgeError("--json-max-mb rotates the --json and --visits files: give --json FILE too")
    value = getattr(a, opt, None)
    if value == "-":
        raise FerEdgeError(f"--json-max-mb: cannot rotate standard output (--{opt} -): give a file name")
    from pathlib import Path

    from fer_edge.runtime.core.fileio import is_special

    if value and is_special(Path(value)):  # renaming /dev/null or a FIFO away would break it for everyone
        raise FerEdgeError(f"--json-max-mb: cannot rotate {value}, a device or pipe: give a regular file name")
    return {"max_bytes": max(1, int(a.json_max_mb * 1024 * 1024)), "keep": a.json_keep}


def check_service_arguments(a: argparse.Namespace) -> None:
    """Everything about these flags that can be wrong, before the model loads."""
    json_rotation(a)
    json_rotation(a, "visits")
    if a.ha_discovery is not None:
        from fer_edge.runtime.serve.ha import check_prefix, node_id

        if not a.mqtt:
            raise FerEdgeError("--ha-discovery publishes through MQTT: give --mqtt mqtt://broker:1883/topic too")
        check_prefix(a.ha_discovery)
        node_id(a.device_name, a.mqtt_client_id)


def start_mqtt(a: argparse.Namespace, options, labels: tuple[str, ...], model: str):
    """The MQTT sink, connected: an unreachable broker or a refused client id is the user's error now."""
    from fer_edge.runtime.serve.mqtt import MqttSink

    ha = None
    if a.ha_discovery is not None:
        from fer_edge.runtime.serve.ha import HaDiscovery, node_id

        from fer_edge.runtime.serve.mqtt import parse_mqtt_url

        ha = HaDiscovery(a.ha_discovery, parse_mqtt_url(a.mqtt, a.mqtt_tls).topic,
                         node_id(a.device_name, a.mqtt_client_id), labels, a.device_name, model)
    return MqttSink(options, ha=ha, connect_timeout=CONNECT_TIMEOUT_S)
