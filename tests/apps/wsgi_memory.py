"""A slow WSGI app for the memory-bound tests: it reads uploads and writes downloads in 64 KiB
pieces, sleeping after each piece of the first SLOW_BYTES so that the client outpaces it."""

import time

PIECE = 64 * 1024
SLOW_BYTES = 8 * 1024 * 1024
BLOCK = b"m" * PIECE


def app(environ, start_response):
    if environ["PATH_INFO"] == "/upload":
        stream = environ["wsgi.input"]
        size = 0
        while piece := stream.read(PIECE):
            size += len(piece)
            if size <= SLOW_BYTES:
                time.sleep(0.002)
        body = str(size).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    total = int(environ["QUERY_STRING"] or PIECE)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))])

    def body():
        for index in range(total // PIECE):
            yield BLOCK
    return body()
