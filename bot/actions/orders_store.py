"""Orders as the actions see them, behind a small Protocol so a real shop backend can replace the demo."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol


class OrderStatus(enum.StrEnum):
    PLACED = "placed"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"
    RETURNED = "returned"


class OrderError(Exception):
    """An order operation is not allowed in the order's current state; carries the order id."""

    def __init__(self, order_id: str, message: str) -> None:
        super().__init__(message)
        self.order_id = order_id


@dataclass(frozen=True)
class OrderItem:
    sku: str
    name: str
    qty: int
    unit_price: float
    size: str | None = None
    colour: str | None = None

    @property
    def subtotal(self) -> float:
        return round(self.qty * self.unit_price, 2)


@dataclass(frozen=True)
class Refund:
    amount: float
    requested_on: date
    status: str  # pending | approved | paid
    reason: str = ""


@dataclass(frozen=True)
class Order:
    id: str
    customer_name: str
    customer_email: str
    status: OrderStatus
    placed_on: date
    items: tuple[OrderItem, ...]
    delivery_option: str
    delivery_price: float
    shipping_address: str
    payment_method: str
    carrier: str | None = None
    tracking_number: str | None = None
    eta: date | None = None
    delivered_on: date | None = None
    invoice_number: str | None = None
    refund: Refund | None = None

    @property
    def total(self) -> float:
        return round(sum(i.subtotal for i in self.items) + self.delivery_price, 2)

    def template_values(self) -> dict[str, Any]:
        """The order as plain values for answer templates."""
        values = {k: getattr(self, k) for k in self.__dataclass_fields__}
        # "lines", not "items": in a template `order.items` would be the dict method
        values.pop("items")
        values.update(status=self.status.value, total=self.total, lines=[i.__dict__ for i in self.items])
        values["refund"] = self.refund.__dict__ if self.refund else None
        return values


class OrderLookup(Protocol):
    """What the actions need from a shop's order system."""

    async def get(self, order_id: str) -> Order | None: ...

    async def cancel(self, order_id: str) -> Order: ...

    async def change_address(self, order_id: str, address: str) -> Order: ...

    async def change_item(
        self, order_id: str, sku: str, *, size: str | None = None, colour: str | None = None
    ) -> Order: ...


def order_from_row(row: Mapping[str, Any], items: list[OrderItem]) -> Order:
    """Build an Order from a demo-store row (dates as ISO strings)."""
    refund = None
    if row["refund_amount"] is not None:
        refund = Refund(
            amount=row["refund_amount"],
            requested_on=date.fromisoformat(row["refund_requested_on"]),
            status=row["refund_status"],
            reason=row["refund_reason"] or "",
        )
    return Order(
        id=row["id"],
        customer_name=row["customer_name"],
        customer_email=row["customer_email"],
        status=OrderStatus(row["status"]),
        placed_on=date.fromisoformat(row["placed_on"]),
        items=tuple(items),
        delivery_option=row["delivery_option"],
        delivery_price=row["delivery_price"],
        shipping_address=row["shipping_address"],
        payment_method=row["payment_method"],
        carrier=row["carrier"],
        tracking_number=row["tracking_number"],
        eta=date.fromisoformat(row["eta"]) if row["eta"] else None,
        delivered_on=date.fromisoformat(row["delivered_on"]) if row["delivered_on"] else None,
        invoice_number=row["invoice_number"],
        refund=refund,
    )
