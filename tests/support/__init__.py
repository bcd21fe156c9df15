"""Helpers shared by the tests: real Mosquitto and InfluxDB processes."""
