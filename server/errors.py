"""Errors that stop the server before it serves, each with a one-line message for the user."""


class StartupError(Exception):
    """The server cannot start: app not importable, address in use, bad certificate..."""


class LifespanFailure(Exception):
    """The application's lifespan startup failed; the message is the app's."""
