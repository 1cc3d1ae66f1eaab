"""The workflow's tool: a stand-in for your order system (replace the table with a real lookup)."""

from halguru import tool

ORDERS = {
    1001: {"status": "shipped", "carrier": "DHL", "eta": "2 days"},
    1002: {"status": "preparing", "carrier": None, "eta": "5 days"},
}


@tool
def lookup_order(order_id: int) -> dict:
    """Look an order up by its number."""
    order = ORDERS.get(order_id)
    if order is None:
        return {"order_id": order_id, "status": "unknown order"}
    return {"order_id": order_id, **order}
