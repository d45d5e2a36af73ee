"""A small, realistic FastAPI app for the framework scenarios of run.py (HTTP/2 over TLS, HTTP/1.1).

``GET /items/{item_id}``: a path parameter validated as an int, a query parameter with a default,
and a pydantic response model serialised to about 300 bytes of JSON — the per-request work of a
typical JSON API, so the server's share of the cost is what an application actually sees.
``GET /`` answers a short JSON object (the readiness probe of run.py).
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel


class Price(BaseModel):
    amount: float
    currency: str


class Item(BaseModel):
    id: int
    name: str
    tags: list[str]
    price: Price
    in_stock: bool
    description: str | None = None


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

TAGS = ["tools", "garden", "outdoor"]


@app.get("/")
async def root() -> dict:
    return {"status": "ok"}


@app.get("/items/{item_id}", response_model=Item)
async def read_item(item_id: int, currency: str = "EUR") -> Item:
    return Item(
        id=item_id,
        name=f"Item {item_id}",
        tags=TAGS,
        price=Price(amount=round(item_id * 1.25, 2), currency=currency),
        in_stock=item_id % 2 == 0,
        description="A sturdy thing that does what it says, shipped in recycled packaging.",
    )
