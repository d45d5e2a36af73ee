"""The WSGI benchmark's app: a Flask hello world, and /sleep (100 ms of blocking work)."""

import time

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello, world!"


@app.get("/sleep")
def sleep():
    time.sleep(0.1)  # a blocking call (a database query, say): the thread pool's case
    return "slept"
