"""Flags of uvicorn and Hypercorn: each alias gives the same Config as its Plexicorn flag, the
converted ones (--host/--port, --uds, --fd, -k, --env-file) behave like theirs on a real
server, and every refused peer flag is one line naming what to type instead."""

from __future__ import annotations

import importlib.metadata
import os
import re
import socket
import subprocess
import sys

import httpx
import pytest
from conftest import free_port
from plexicorn.cli import build_parser, parse_config
from plexicorn.envfile import parse_env_file
from plexicorn.peerflags import REFUSED, RENAMED
from test_cli import APPS, TIMEOUT, assert_one_error_line, plexicorn, run_cli  # noqa: F401 (plexicorn: the fixture)

APP = ("logging_app:app", "--app-dir", str(APPS))


def config_of(*args: str):  # type: ignore[no-untyped-def]
    return parse_config(["app:app", *args])[1]


@pytest.mark.parametrize(("peer", "ours"), [
    (["--ssl-certfile", "c.pem"], ["--certfile", "c.pem"]),
    (["--ssl-keyfile", "k.pem", "--ssl-certfile", "c.pem"], ["--keyfile", "k.pem", "--certfile", "c.pem"]),
    (["--ssl-keyfile-password", "pw", "--certfile", "c.pem"], ["--keyfile-password", "pw", "--certfile", "c.pem"]),
    (["--ssl-ca-certs", "ca.pem", "--certfile", "c.pem"], ["--ca-certs", "ca.pem", "--certfile", "c.pem"]),
    (["--timeout-keep-alive", "7"], ["--keep-alive-timeout", "7"]),
    (["--timeout-graceful-shutdown", "3"], ["--graceful-timeout", "3"]),
    (["--access-logfile", "a.log"], ["--access-log-file", "a.log"]),
    (["--error-logfile", "e.log"], ["--error-log-file", "e.log"]),
    (["--log-file", "e.log"], ["--error-log-file", "e.log"]),
    (["--error-log", "e.log"], ["--error-log-file", "e.log"]),
    (["--access-logformat", "{client} {status}"], ["--access-log-format", "{client} {status}"]),
    (["--host", "0.0.0.0", "--port", "9000"], ["--bind", "0.0.0.0:9000"]),
    (["--port", "9000"], ["--bind", "127.0.0.1:9000"]),
    (["--host", "::1", "--port", "9000"], ["--bind", "[::1]:9000"]),
    (["--host", "0.0.0.0"], ["--bind", "0.0.0.0:8000"]),
    (["--host", "0.0.0.0", "--certfile", "c.pem"], ["--bind", "0.0.0.0:8443", "--certfile", "c.pem"]),
    (["--uds", "/tmp/app.sock"], ["--bind", "unix:/tmp/app.sock"]),
    (["--fd", "3"], ["--bind", "fd://3"]),
    # uvicorn serves one address: --fd, else --uds, else --host/--port.
    (["--port", "9000", "--uds", "/tmp/a.sock"], ["--bind", "unix:/tmp/a.sock"]),
    (["--host", "0.0.0.0", "--uds", "/tmp/a.sock", "--fd", "3"], ["--bind", "fd://3"]),
    (["--bind", "127.0.0.1:9001", "--uds", "/tmp/a.sock", "--port", "9000"],
     ["--bind", "127.0.0.1:9001", "--bind", "unix:/tmp/a.sock"]),
    (["-k", "uvloop"], ["--loop", "uvloop"]),
    (["--worker-class", "asyncio"], ["--loop", "asyncio"]),
    (["--log-level", "WARNING"], ["--log-level", "warning"]),
    (["--header", "X-A: b"], ["--header", "x-a:b"]),
], ids=lambda args: " ".join(args))
def test_alias_gives_the_same_config_as_the_plexicorn_flag(peer, ours):
    # Compared through their effect: the same binds, files, timeouts and headers.
    a, b = config_of(*peer), config_of(*ours)
    assert a.binds == b.binds and a.default_headers == b.default_headers
    for name in ("certfile", "keyfile", "keyfile_password", "ca_certs", "keep_alive_timeout", "graceful_timeout",
                 "access_log_file", "error_log_file", "loop", "log_level", "access_log_format"):
        assert getattr(a, name) == getattr(b, name), name


def test_every_renamed_flag_is_tested_above():
    tested = set(re.findall(r'\["(--[\w-]+)"', open(__file__).read()))
    assert set(RENAMED) <= tested


@pytest.mark.parametrize("flag", sorted(REFUSED))
def test_a_refused_peer_flag_names_the_plexicorn_way(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["app:app", flag, "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plexicorn: error: {flag}: {REFUSED[flag]}") and err.count("\n") == 1, err
    flags = {option for action in build_parser()._actions for option in action.option_strings
             if action.help != "==SUPPRESS=="}
    for named in re.findall(r"--[a-z0-9-]+", REFUSED[flag]):
        assert named in flags, f"{flag}'s hint names {named}, which is not a Plexicorn flag"


@pytest.mark.parametrize(("args", "expected"), [
    (["--http", "h11"], "--http1-parser h11"),
    (["--http", "httptools"], "--http1-parser httptools"),
    (["-k", "trio"], "-k uvloop"),
    (["--limit-max-requests", "100"], "use --max-requests"),
    (["--ws-max-size", "100"], "use --ws-max-message-size"),
    (["--keep-alive", "5"], "use --keep-alive-timeout"),
])
def test_refusals_run_from_the_command_are_one_line_and_exit_2(args, expected, tmp_path):
    result = run_cli("app:app", *args, cwd=tmp_path)
    assert result.returncode == 2 and expected in result.stderr
    assert result.stderr.count("\n") == 1 and "unrecognized" not in result.stderr


def test_c_is_config_and_python_configs_are_one_line(tmp_path):
    (tmp_path / "plexicorn.toml").write_text('bind = ["127.0.0.1:9100"]\nkeep_alive_timeout = 9\n')
    assert config_of("-c", str(tmp_path / "plexicorn.toml")) == config_of("--config", str(tmp_path / "plexicorn.toml"))
    assert config_of("-c", str(tmp_path / "plexicorn.toml")).keep_alive_timeout == 9
    for value in ("python:settings", "file:settings.py", "gunicorn.conf.py"):
        line = assert_one_error_line(run_cli("app:app", "-c", value, cwd=tmp_path))
        assert line == (f"plexicorn: error: --config {value!r}: Plexicorn reads a TOML file of its own settings "
                        "(keys are the flag names with underscores), not Python")
    # Hypercorn's atom format through its own spelling: the same refusal as --access-log-format's.
    line = assert_one_error_line(run_cli("app:app", "--access-logformat", "%(h)s %(s)s", cwd=tmp_path))
    assert "--access-log-format '%(h)s %(s)s': Plexicorn's fields are written {field}" in line


def test_no_abbreviations(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["app:app", "--graceful", "3"])
    assert "unrecognized arguments: --graceful" in capsys.readouterr().err


def test_version_and_help_with_defaults(tmp_path):
    expected = f"plexicorn {importlib.metadata.version('plexicorn')}\n"
    for flag in ("--version", "-V"):
        result = run_cli(flag, cwd=tmp_path)
        assert result.returncode == 0 and result.stdout == expected
    help_text = re.sub(r"\s+", " ", run_cli("--help", cwd=tmp_path).stdout.split("options:", 1)[1])
    # Python 3.13's argparse names the metavar once after all of a flag's names, older ones after each.
    assert "(default: 5.0)" in help_text.split("--keep-alive-timeout", 1)[1][:300]
    assert "(default: off)" in help_text.split("--server-header", 1)[1][:200]
    assert "--timeout-keep-alive" in help_text and "--ssl-certfile" in help_text


def test_host_and_port_serve_like_bind(plexicorn):
    port = free_port()
    process = plexicorn(*APP, "--host", "127.0.0.1", "--port", port, "--timeout-keep-alive", "1")
    assert process.wait_listening() == port
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "hello"
    assert process.stop() == 0


def test_uds_serves_on_a_unix_socket(plexicorn, tmp_path):
    path = tmp_path / "app.sock"
    process = plexicorn(*APP, "--uds", path)
    process.stderr.wait_for(f"Listening on http+unix:{path}")
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=TIMEOUT) as client:
        assert client.get("http://localhost/").text == "hello"
    assert process.stop() == 0


def test_uds_wins_over_host_and_port_as_in_uvicorn(plexicorn, tmp_path):
    path, port = tmp_path / "app.sock", free_port()
    process = plexicorn(*APP, "--host", "127.0.0.1", "--port", port, "--uds", path)
    process.stderr.wait_for(f"Listening on http+unix:{path}")
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=TIMEOUT) as client:
        assert client.get("http://localhost/").text == "hello"
    # Every listener is logged before the app is served: the port was never bound.
    assert "Listening on http://" not in process.stderr.text
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    assert process.stop() == 0


def test_fd_serves_on_an_inherited_socket(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "plexicorn", *APP, "--fd", str(sock.fileno())],
                               pass_fds=(sock.fileno(),), stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "Listening on" in line:
                break
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "hello"
    finally:
        process.terminate()
        process.wait(TIMEOUT)
        sock.close()


def test_env_file_is_loaded_before_the_app_and_set_variables_win(plexicorn, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nexport PLEXICORN_TEST_ENV="from file # not a comment"\nOTHER=1\n')
    port = free_port()
    process = plexicorn(*APP, "--port", port, "--env-file", env_file)
    assert process.wait_listening() == port
    assert httpx.get(f"http://127.0.0.1:{port}/env", timeout=TIMEOUT).text == "from file # not a comment"
    assert process.stop() == 0
    port = free_port()
    process = plexicorn(*APP, "--port", port, "--env-file", env_file,
                        env={**os.environ, "PLEXICORN_TEST_ENV": "from the environment"})
    assert process.wait_listening() == port
    assert httpx.get(f"http://127.0.0.1:{port}/env", timeout=TIMEOUT).text == "from the environment"
    assert process.stop() == 0
    result = run_cli(*APP, "--env-file", tmp_path / "missing.env", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("plexicorn: error: --env-file")


def test_env_file_variables_and_multi_line_values_reach_the_app(plexicorn, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text('BASE_PART=from the file\nPLEXICORN_TEST_ENV="line one\n${BASE_PART}, ${HOME_PART}, '
                        '${UNSET_PART:-a default}"\n')
    port = free_port()
    env = {**os.environ, "HOME_PART": "from the environment"}
    env.pop("UNSET_PART", None)
    env.pop("PLEXICORN_TEST_ENV", None)
    process = plexicorn(*APP, "--port", port, "--env-file", env_file, env=env)
    assert process.wait_listening() == port
    assert httpx.get(f"http://127.0.0.1:{port}/env", timeout=TIMEOUT).text == (
        "line one\nfrom the file, from the environment, a default")
    assert process.stop() == 0


def test_env_file_syntax():
    assert parse_env_file("A=1\n  B = two words # c\nC='x\\ny'\nD=\"x\\ny\"\nE=\n", "t") == {
        "A": "1", "B": "two words", "C": "x\\ny", "D": "x\ny", "E": ""}
    with pytest.raises(Exception, match="line 1: expected KEY=VALUE"):
        parse_env_file("not a line\n", "t")
    with pytest.raises(Exception, match="unterminated"):
        parse_env_file('A="open\n', "t")
    with pytest.raises(Exception, match="line 3: unterminated"):
        parse_env_file('A=1\n\nB="open\nC=2\n', "t")
    with pytest.raises(Exception, match="line 2: text after the closing"):
        parse_env_file('A=1\nB="x" y\n', "t")


def test_env_file_expands_variables_and_reads_multi_line_values_as_python_dotenv():
    text = ('HOST=db.internal\r\n'
            'URL=postgres://${HOST}:${PORT:-5432}/app\n'
            'KEY="-----BEGIN KEY-----\nabc\\tdef\n-----END KEY-----" # a comment\n'
            "QUOTED='it\\'s ${HOST}\n on two lines'\n"
            'FROM_ENV=${SET_OUTSIDE}/x\n'
            'EMPTY=${SET_EMPTY:-default}\n'
            'AFTER=${LATER}\n'
            'LATER=1\n')
    # The environment wins over the file in expansions too (python-dotenv without override).
    assert parse_env_file(text, "t", {"SET_OUTSIDE": "/srv", "SET_EMPTY": "", "HOST": "db.from-env"}) == {
        "HOST": "db.internal", "URL": "postgres://db.from-env:5432/app",
        "KEY": "-----BEGIN KEY-----\nabc\tdef\n-----END KEY-----",
        "QUOTED": "it's db.from-env\n on two lines", "FROM_ENV": "/srv/x", "EMPTY": "",
        "AFTER": "", "LATER": "1"}
    assert parse_env_file("A=x\nB=${A}${A}\n", "t", {}) == {"A": "x", "B": "xx"}


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_server_date_and_default_headers(plexicorn, http2):
    port = free_port()
    process = plexicorn(*APP, "--port", port, "--server-header", "--header", "X-Served-By: web1",
                        "--header", "content-type:never/this", "--no-date-header")
    assert process.wait_listening() == port
    with httpx.Client(http1=not http2, http2=http2, timeout=TIMEOUT) as client:
        response = client.get(f"http://127.0.0.1:{port}/")
        missing = client.get(f"http://127.0.0.1:{port}/", headers={"host": ""})  # a 400 the server makes
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert response.headers["server"] == "plexicorn" and response.headers["x-served-by"] == "web1"
    assert response.headers["content-type"] == "text/plain"  # the app's own header wins
    assert "date" not in response.headers
    assert "date" not in missing.headers and missing.headers.get("server", "plexicorn") == "plexicorn"
    assert process.stop() == 0


def test_by_default_a_date_and_no_server_header(plexicorn):
    port = free_port()
    process = plexicorn(*APP, "--port", port)
    assert process.wait_listening() == port
    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)
    assert "server" not in response.headers and "date" in response.headers
    assert process.stop() == 0


@pytest.mark.parametrize("header", ["nocolon", "bad name:x", "x-a:line\nbreak", "content-length:5", ":x"])
def test_bad_header_is_one_line_error(header, tmp_path):
    result = run_cli(*APP, "--header", header, cwd=tmp_path)
    assert result.returncode == 2 and "--header" in result.stderr and result.stderr.count("\n") == 1
