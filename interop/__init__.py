"""Interoperability and conformance runs of Plexicorn against software nobody on this project wrote.

`python -m interop` (or `make interop`) runs them; see interop/README.md.
"""
