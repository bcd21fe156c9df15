"""services/occupancy."""
