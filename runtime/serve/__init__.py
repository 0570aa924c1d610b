"""A recognizer as a long-running service: the token check (access), the HTTP API, the browser preview, MQTT
and Home Assistant discovery, the service flags (--json rotation) and the systemd watchdog. Their command-line
parts sit one layer up, in runtime/ (cli.py, cli_serve.py)."""
