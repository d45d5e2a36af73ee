"""WSGI (PEP 3333) applications, run in a bounded thread pool behind the ASGI call path.

`app.py`'s `WSGIApp` is an ASGI 3 app wrapping a WSGI one: every HTTP request (an HTTP/1.1
exchange or an HTTP/2 stream) is one WSGI call in a pool thread. `bridge.py` carries the thread's
reads and writes to the loop task serving the request, so the ASGI cycle's flow control and
backpressure apply to WSGI apps unchanged. `environ.py` builds the environ from the ASGI scope;
`call.py` is the thread side: `start_response`, `write()`, the iterable, `wsgi.input`.
"""
