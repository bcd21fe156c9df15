"""services/alerts."""
