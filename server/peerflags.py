"""Flags of uvicorn, Hypercorn and Gunicorn: accepted with the same meaning, or refused with
the Plexicorn way to say it (never a bare "unrecognized arguments").

`RENAMED` maps a peer flag to the Plexicorn flag it is another name for (argparse gives the
flag both names). `REFUSED` maps a peer flag Plexicorn has no exact equivalent for to what to
type instead. `--host`/`--port`, `--uds`, `--fd`, `-k`, `--env-file` need a conversion and
are handled in `cli.py`, as is `-c` (Hypercorn's and Gunicorn's `--config`: the same TOML flag,
its `python:`/`file:` forms refused). Short flags follow their long ones. Aliases exist on the command line only; TOML keys are Plexicorn's.
"""

from __future__ import annotations

# peer flag -> Plexicorn flag (same value, same meaning)
RENAMED: dict[str, str] = {
    "--ssl-certfile": "--certfile",            # uvicorn
    "--ssl-keyfile": "--keyfile",
    "--ssl-keyfile-password": "--keyfile-password",
    "--ssl-ca-certs": "--ca-certs",
    "--timeout-keep-alive": "--keep-alive-timeout",
    "--timeout-graceful-shutdown": "--graceful-timeout",
    "--access-logfile": "--access-log-file",    # Hypercorn, Gunicorn
    "--error-logfile": "--error-log-file",
    "--log-file": "--error-log-file",
    "--error-log": "--error-log-file",          # Hypercorn's older spelling
    # Same setting, another syntax: a format of %(h)s atoms is refused with a {field} example.
    "--access-logformat": "--access-log-format",
}

# peer flag -> what to type instead
REFUSED: dict[str, str] = {
    # uvicorn
    "--limit-max-requests": "use --max-requests",
    "--limit-max-requests-jitter": "use --max-requests-jitter",
    "--ws-max-size": "use --ws-max-message-size",
    "--ws-max-queue": "WebSocket input waiting for the app is bounded at 64 KiB; drop the flag",
    "--ws-per-message-deflate": "permessage-deflate is used whenever the client offers it; drop the flag",
    "--no-ws-per-message-deflate": "permessage-deflate is used whenever the client offers it; drop the flag",
    "--ws": "WebSockets are built in (wsproto); drop the flag",
    "--wsgi": "use --interface wsgi (WSGI apps are also detected without it)",
    "--use-colors": "log lines have no colours; see --log-format",
    "--no-use-colors": "log lines have no colours; drop the flag",
    "--reload-delay": "--reload restarts when a change is seen; drop the flag",
    "--ssl-version": "use --tls-min-version 1.2 or 1.3",
    "--ssl-cert-reqs": "use --client-cert none|optional|required",
    "--ssl-ciphers": "use --tls-ciphers",
    "--h11-max-incomplete-event-size": "use --h2-max-header-list-size (it bounds HTTP/1.1 request heads too)",
    "--timeout-worker-healthcheck": "use --worker-healthcheck-timeout",
    "--timeout-notify": "use --worker-healthcheck-timeout",
    # Hypercorn
    "--keep-alive": "use --keep-alive-timeout",
    "--read-timeout": "use --keep-alive-timeout (idle connections), --header-timeout, --body-timeout "
                      "and --tls-handshake-timeout",
    "--insecure-bind": "use --bind (and --redirect-http HOST:PORT to send cleartext clients to HTTPS)",
    "--quic-bind": "HTTP/3 is not supported",
    "--ciphers": "use --tls-ciphers",
    "--cert-reqs": "use --client-cert none|optional|required",
    "--verify-mode": "use --client-cert none|optional|required",
    "--websocket-ping-interval": "use --ws-ping-interval",
    "--debug": "use --log-level debug",
    "--server-name": "no equivalent: Plexicorn answers any Host; check it in the app",
    "--statsd-host": "no StatsD output; see the README for metrics",
    "--statsd-prefix": "no StatsD output; see the README for metrics",
    "--pid": "no pid file; run under systemd or a process manager",
    "-p": "no pid file; run under systemd or a process manager",
    "--user": "run under systemd (User=) or a process manager",
    "-u": "run under systemd (User=) or a process manager",
    "--group": "run under systemd (Group=) or a process manager",
    "-g": "run under systemd (Group=) or a process manager",
    "--umask": "run under systemd (UMask=) or a process manager",
    "-m": "run under systemd (UMask=) or a process manager",
    # Gunicorn
    "--timeout": "use --worker-healthcheck-timeout",
    "-t": "use --worker-healthcheck-timeout",
    "--threads": "ASGI apps run on the event loop; use --workers",
    "--worker-connections": "use --limit-concurrency (requests in flight per worker process)",
    "--daemon": "run under systemd or a process manager",
    "-D": "run under systemd or a process manager",
    "--env": "use --env-file FILE (KEY=VALUE lines)",
    "-e": "use --env-file FILE (KEY=VALUE lines)",
}

# Values of a Plexicorn flag that are another server's and mean something else here.
REFUSED_VALUES: dict[str, dict[str, str]] = {
    "http": {"h11": "use --http1-parser h11 (--http picks HTTP versions: auto, 1.1, 2)",
             "httptools": "use --http1-parser httptools (--http picks HTTP versions: auto, 1.1, 2)"},
    "loop": {"none": "use --loop asyncio"},
}

# -k/--worker-class (Hypercorn, Gunicorn) -> --loop
WORKER_CLASSES: dict[str, str] = {"uvloop": "uvloop", "asyncio": "asyncio"}
