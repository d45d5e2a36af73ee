"""A module with a syntax error on line 4."""


def app(scope, receive, send)
    return None
