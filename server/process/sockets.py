"""Where listening sockets come from: bound here, inherited by file descriptor (`--bind fd://N`)
or passed by systemd socket activation (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES).

The process that acquires them (the only process, or the supervisor) hands them to its workers,
which serve the same sockets: the kernel gives each connection to one of them.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass, field

from ..config import Bind, Config, parse_bind
from ..errors import StartupError
from ..runtime.listener import bind_socket

# sd_listen_fds(3): passed sockets start at file descriptor 3.
SD_LISTEN_FDS_START = 3


@dataclass
class Listeners:
    """The sockets of one server: those serving the app, and those of --redirect-http."""

    app: list[socket.socket] = field(default_factory=list)
    redirect: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.app + self.redirect:
            sock.close()

    def roles(self) -> list[tuple[str, int]]:
        """(role, file descriptor) of every socket, for a worker to rebuild them."""
        return [("app", sock.fileno()) for sock in self.app] + [("redirect", sock.fileno()) for sock in self.redirect]

    @classmethod
    def from_roles(cls, roles: list[tuple[str, int]]) -> Listeners:
        listeners = cls()
        for role, fd in roles:
            os.set_inheritable(fd, False)  # passed to this worker only, not to the app's children
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            (listeners.redirect if role == "redirect" else listeners.app).append(sock)
        return listeners


def acquire_listeners(config: Config) -> Listeners:
    """Every socket `config` asks for; raises StartupError (closing what it got) on failure."""
    activated = systemd_sockets()
    listeners = Listeners()
    taken: set[int] = set()  # the inherited file descriptors so far
    try:
        if config.redirect_http is not None:
            listeners.redirect = _acquire(parse_bind(config.redirect_http), config, activated, taken)
        if config.bind or not activated:
            listeners.app = [sock for bind in config.binds for sock in _acquire(bind, config, activated, taken)]
        else:
            # Socket activation without --bind: every socket systemd passed (but the redirect's).
            listeners.app = [_inherited(fd, f"fd://{name}", taken) for fd, name in activated if fd not in taken]
    except BaseException:
        listeners.close()
        raise
    return listeners


def _acquire(bind: Bind, config: Config, activated: list[tuple[int, str]], taken: set[int]) -> list[socket.socket]:
    if bind.fd is None:
        return bind_socket(bind, config.backlog, reuse_port=config.reuse_port)
    if bind.fd.isdigit():
        return [_inherited(int(bind.fd), str(bind), taken)]
    fds = [fd for fd, name in activated if name == bind.fd]
    if not fds:
        names = ", ".join(sorted({name for _, name in activated})) or "none: LISTEN_FDS is not set for this process"
        raise StartupError(f"cannot listen on {bind}: systemd passed no socket named {bind.fd!r} (names: {names})")
    return [_inherited(fd, str(bind), taken) for fd in fds]


def _inherited(fd: int, label: str, taken: set[int]) -> socket.socket:
    """The listening socket open at `fd`, checked: a stream socket already listening, not taken yet."""
    if fd in taken:  # two socket objects would close one descriptor twice
        raise StartupError(f"cannot listen on {label}: file descriptor {fd} is given twice")
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        raise StartupError(f"cannot listen on {label}: file descriptor {fd} is not open") from None
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"cannot listen on {label}: file descriptor {fd} is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()  # not ours to close
        raise StartupError(f"cannot listen on {label}: file descriptor {fd} is not a listening stream socket")
    sock.setblocking(False)
    os.set_inheritable(fd, False)  # workers get it explicitly; nothing else the app starts should
    taken.add(fd)
    return sock


def systemd_sockets() -> list[tuple[int, str]]:
    """(file descriptor, name) of the sockets systemd passed to this process, read once.

    The variables are removed afterwards, as sd_listen_fds(1) does, so that no child process
    takes them for its own.
    """
    count = os.environ.get("LISTEN_FDS")
    pid = os.environ.get("LISTEN_PID")
    names = os.environ.get("LISTEN_FDNAMES", "")
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not count or not count.isdigit() or (pid is not None and pid != str(os.getpid())):
        return []
    fds = range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count))
    labels = names.split(":") if names else []
    return [(fd, labels[i] if i < len(labels) and labels[i] else str(fd)) for i, fd in enumerate(fds)]
