"""The production process model: listening sockets from anywhere (bound here, inherited with
fd://, systemd socket activation), a supervisor that runs worker processes, sd_notify, --reload.

Nothing here is imported at package import: `python -m plexicorn.process.worker` must be able
to run this package's modules as scripts.
"""
