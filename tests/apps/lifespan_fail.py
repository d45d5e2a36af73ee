"""An app whose lifespan startup reports failure."""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    raise AssertionError("no request should reach an app whose startup failed")
