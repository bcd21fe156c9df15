"""Simulated library devices: a seeded model of the day, published over MQTT."""

from simulators.config import Faults, SimConfig
from simulators.devices import Message
from simulators.model import GateTruth, LibraryModel, Truth, generate, messages
from simulators.run import Simulation, SimulationReport, run_simulation

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
