"""Small layouts for tests that need one of each device kind."""

from __future__ import annotations

from stackpulse.kernel.layout import Layout

ONE_OF_EACH = Layout.model_validate(
    {
        "site": "main",
        "name": "Test Library",
        "zones": [{"id": "f1", "name": "Floor 1", "floor": 1, "capacity": 10}],
        "gates": [{"device": "gate-1", "outer": "outside", "inner": "f1"}],
        "seats": [{"id": "f1-001", "device": "seat-0001", "zone": "f1"}],
        "shelves": [
            {
                "device": "shelf-1",
                "zone": "f1",
                "sections": [{"id": "1F-A01-1", "first": "A1", "last": "B99"}],
            }
        ],
        "circulation": [{"device": "circ-1", "zone": "f1"}],
    }
)
