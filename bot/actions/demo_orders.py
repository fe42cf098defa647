"""The demo shop's order system: SQLite, seeded from data/demo_orders.yml relative to today."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.actions.orders_store import Order, OrderError, OrderItem, OrderStatus, order_from_row

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, customer_name TEXT NOT NULL, customer_email TEXT NOT NULL,
    status TEXT NOT NULL, placed_on TEXT NOT NULL, delivery_option TEXT NOT NULL,
    delivery_price REAL NOT NULL, shipping_address TEXT NOT NULL, payment_method TEXT NOT NULL,
    carrier TEXT, tracking_number TEXT, eta TEXT, delivered_on TEXT, invoice_number TEXT,
    refund_amount REAL, refund_requested_on TEXT, refund_status TEXT, refund_reason TEXT
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id TEXT NOT NULL REFERENCES orders(id), line INTEGER NOT NULL, sku TEXT NOT NULL,
    name TEXT NOT NULL, qty INTEGER NOT NULL, unit_price REAL NOT NULL, size TEXT, colour TEXT,
    PRIMARY KEY (order_id, line)
);
"""

#: statuses in which items and address may still change / the order may be cancelled for free
DEFAULT_CHANGEABLE = ("placed", "paid")


def delivery_price(option: Mapping[str, Any], subtotal: float) -> float:
    """The option's price, or 0 when the items reach its free-delivery threshold."""
    free_from = option.get("free_from")
    return 0.0 if free_from is not None and subtotal >= float(free_from) else float(option["price"])


def create_demo_store(db: Path, seed: Path, delivery_options: Iterable[Mapping[str, Any]], today: date) -> int:
    """(Re)create the demo order database from the seed file; returns the number of orders."""
    orders = yaml.safe_load(seed.read_text(encoding="utf-8"))["orders"]
    options = {o["id"]: o for o in delivery_options}
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with closing(sqlite3.connect(tmp)) as conn, conn:
        conn.executescript(SCHEMA)
        for order in orders:
            _insert(conn, order, options, today)
    tmp.replace(db)  # atomic: a half-written store is never visible
    return len(orders)


def _days(today: date, days_ago: Any, sign: int = -1) -> str | None:
    return None if days_ago is None else (today + timedelta(days=sign * int(days_ago))).isoformat()


def _insert(conn: sqlite3.Connection, o: Mapping[str, Any], options: Mapping[str, Mapping[str, Any]],
            today: date) -> None:
    refund = o.get("refund") or {}
    subtotal = sum(float(i["unit_price"]) * int(i["qty"]) for i in o["items"])
    conn.execute(
        "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            str(o["id"]), o["customer_name"], o["customer_email"], o["status"],
            _days(today, o["placed_days_ago"]), o["delivery_option"],
            delivery_price(options[o["delivery_option"]], subtotal),
            o["shipping_address"], o["payment_method"], o.get("carrier"), o.get("tracking_number"),
            _days(today, o.get("eta_days_from_now"), sign=1), _days(today, o.get("delivered_days_ago")),
            o.get("invoice_number"), refund.get("amount"), _days(today, refund.get("requested_days_ago")),
            refund.get("status"), refund.get("reason"),
        ),
    )
    for line, item in enumerate(o["items"]):
        conn.execute(
            "INSERT INTO order_items VALUES (?,?,?,?,?,?,?,?)",
            (str(o["id"]), line, item["sku"], item["name"], int(item["qty"]), float(item["unit_price"]),
             item.get("size"), item.get("colour")),
        )


class SqliteOrderStore:
    """OrderLookup over the demo SQLite file. Calls run in a thread so the event loop never blocks."""

    def __init__(self, db: Path, catalog: Iterable[Mapping[str, Any]],
                 changeable: Iterable[str] = DEFAULT_CHANGEABLE) -> None:
        self._db = db
        self._catalog = {p["sku"]: p for p in catalog}
        self._changeable = {OrderStatus(s) for s in changeable}

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self._db, timeout=5.0)
        conn.row_factory = sqlite3.Row
        try:
            with conn:  # one transaction: committed on success, rolled back on error
                yield conn
        finally:
            conn.close()

    def _get(self, conn: sqlite3.Connection, order_id: str) -> Order | None:
        row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            return None
        rows = conn.execute("SELECT * FROM order_items WHERE order_id = ? ORDER BY line", (order_id,))
        items = [OrderItem(r["sku"], r["name"], r["qty"], r["unit_price"], r["size"], r["colour"]) for r in rows]
        return order_from_row(dict(row), items)

    def _require(self, conn: sqlite3.Connection, order_id: str, verb: str) -> Order:
        order = self._get(conn, order_id)
        if order is None:
            raise OrderError(order_id, f"order {order_id} does not exist")
        if order.status not in self._changeable:
            raise OrderError(order_id, f"order {order_id} is {order.status.value} and can no longer be {verb}")
        return order

    async def get(self, order_id: str) -> Order | None:
        return await asyncio.to_thread(self._read, order_id)

    def _read(self, order_id: str) -> Order | None:
        with self._connect() as conn:
            return self._get(conn, order_id)

    async def cancel(self, order_id: str) -> Order:
        return await asyncio.to_thread(self._cancel, order_id)

    def _cancel(self, order_id: str) -> Order:
        with self._connect() as conn:
            order = self._require(conn, order_id, "cancelled")
            refund: tuple[Any, ...] = (None, None, None, None)
            if order.status is OrderStatus.PAID:  # money was taken: it goes back in full
                refund = (order.total, date.today().isoformat(), "approved", "order cancelled")
            conn.execute(
                "UPDATE orders SET status = 'cancelled', refund_amount = ?, refund_requested_on = ?,"
                " refund_status = ?, refund_reason = ? WHERE id = ?",
                (*refund, order_id),
            )
            return self._get(conn, order_id)  # type: ignore[return-value]

    async def change_address(self, order_id: str, address: str) -> Order:
        return await asyncio.to_thread(self._change_address, order_id, address)

    def _change_address(self, order_id: str, address: str) -> Order:
        with self._connect() as conn:
            self._require(conn, order_id, "changed")
            conn.execute("UPDATE orders SET shipping_address = ? WHERE id = ?", (address, order_id))
            return self._get(conn, order_id)  # type: ignore[return-value]

    async def change_item(
        self, order_id: str, sku: str, *, size: str | None = None, colour: str | None = None
    ) -> Order:
        return await asyncio.to_thread(self._change_item, order_id, sku, size, colour)

    def _change_item(self, order_id: str, sku: str, size: str | None, colour: str | None) -> Order:
        product = self._catalog.get(sku, {})
        if size and size not in [str(s) for s in product.get("sizes", [])]:
            raise OrderError(order_id, f"{product.get('name', sku)} is not available in size {size}")
        if colour and colour not in product.get("colours", []):
            raise OrderError(order_id, f"{product.get('name', sku)} is not available in {colour}")
        with self._connect() as conn:
            self._require(conn, order_id, "changed")
            conn.execute(
                "UPDATE order_items SET size = COALESCE(?, size), colour = COALESCE(?, colour)"
                " WHERE order_id = ? AND sku = ?",
                (size, colour, order_id, sku),
            )
            return self._get(conn, order_id)  # type: ignore[return-value]
