"""Simulated library devices: a seeded model of the day, published over MQTT."""

from stackpulse.simulators.config import Faults, SimConfig
from stackpulse.simulators.devices import Message
from stackpulse.simulators.model import GateTruth, LibraryModel, Truth, generate, messages
from stackpulse.simulators.run import Simulation, SimulationReport, run_simulation

__all__ = [
    "Faults",
    "GateTruth",
    "LibraryModel",
    "Message",
    "SimConfig",
    "Simulation",
    "SimulationReport",
    "Truth",
    "generate",
    "messages",
    "run_simulation",
]
