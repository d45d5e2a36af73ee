"""A Flask app for the WSGI tests: routes, JSON, a streamed body, send_file, uploads."""

import hashlib
from pathlib import Path

from flask import Flask, Response, request, send_file, stream_with_context

app = Flask(__name__)
DATA = Path(__file__)  # the tests point this at a larger file


@app.get("/")
def index():
    return "hello from flask"


@app.get("/items/<int:item>")
def item(item):
    return {"item": item, "q": request.args.get("q"), "scheme": request.scheme,
            "root": request.root_path, "protocol": request.environ["SERVER_PROTOCOL"]}


@app.post("/json")
def echo_json():
    return {"got": request.get_json(), "remote": request.remote_addr}


@app.get("/stream")
def stream():
    count = int(request.args.get("n", 5))

    def generate():
        for index in range(count):
            yield f"chunk {index}\n"
    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/file")
def file():  # noqa: A001 - the route's name
    return send_file(DATA, mimetype="application/octet-stream")


@app.post("/upload")
def upload():
    uploaded = request.files["file"]
    digest = hashlib.sha256(uploaded.read()).hexdigest()
    return {"name": uploaded.filename, "sha256": digest, "field": request.form.get("field")}


@app.get("/error")
def error():
    raise RuntimeError("flask view failed")
