"""stackpulse."""
