"""App factories and things that are not ASGI apps, for --factory and the importer's messages."""

from good import app as _app

settings = {"debug": True}  # not callable


def create_app():
    return _app


def create_nothing():
    return settings


def create_factory():
    return create_app  # one call too few


def create_broken():
    raise ValueError("missing SECRET_KEY")


class Application:
    """A class: building it gives the app, so it needs --factory."""

    def __init__(self):
        self.app = _app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def takes_anything(*args):
    """Fits every interface's call: only --interface can say which it is."""
