"""services/inventory."""
