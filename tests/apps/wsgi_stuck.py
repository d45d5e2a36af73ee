"""A WSGI app whose call never returns (a stuck database query, say)."""

import threading


def app(environ, start_response):
    environ["wsgi.errors"].write("stuck call started\n")
    environ["wsgi.errors"].flush()
    threading.Event().wait()  # forever
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"never"]
