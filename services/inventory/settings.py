"""The inventory service's settings: STACKPULSE_INVENTORY_* (durations as `10m`, `2h`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from stackpulse.kernel.durations import Duration, PositiveDuration
from stackpulse.kernel.service import RunnerSettings
from stackpulse.services.inventory.model import InventorySettings


class InventoryServiceSettings(RunnerSettings):
    """Findings, demand, and how often lists, counts and checkpoints are written."""

    model_config = SettingsConfigDict(env_prefix="STACKPULSE_INVENTORY_", populate_by_name=True)

    client_id: str = Field(
        "stackpulse-inventory",
        description="MQTT client id of the session (one per process when sites are split)",
    )
    confirm_sweeps: int = Field(2, ge=1, le=100, description="sweeps away from home: misplaced")
    missing_sweeps: int = Field(
        3, ge=1, le=1000, description="sweeps of its home unheard (and not on loan): missing"
    )
    reshelve_within: Duration = Field(
        timedelta(hours=2), description="a checked-in item not shelved by then awaits reshelving"
    )
    sweep_timeout: Duration = Field(
        timedelta(minutes=10), description="a sweep with parts outstanding closes after this"
    )
    demand_window: Duration = Field(timedelta(days=30), description="demand signals counted over")
    holds_per_copy: float = Field(
        2.0, gt=0, le=1e6, allow_inf_nan=False, description="holds per copy that suggest buying"
    )
    uses_per_copy: float = Field(
        5.0, gt=0, le=1e6, allow_inf_nan=False, description="in-library uses per copy: buy"
    )
    use_absent_sweeps: int = Field(
        2, ge=1, le=100, description="sweeps off the shelf and back, no checkout: in-library use"
    )
    tick: PositiveDuration = Field(
        timedelta(seconds=1), description="wall time between ticks and coalesced list publishes"
    )
    record_every: PositiveDuration = Field(
        timedelta(minutes=1), description="clock time between stored counts"
    )
    checkpoint_every: PositiveDuration = Field(
        timedelta(seconds=30), description="how often the state is checkpointed, when changed"
    )
    max_list_items: int = Field(
        20_000, ge=1, le=1_000_000, description="longer lists publish their first items and total"
    )
    catchup_first: Duration = Field(
        timedelta(hours=2), description="with no checkpoint: how far back to read the store"
    )

    @property
    def logic(self) -> InventorySettings:
        return InventorySettings(
            confirm_sweeps=self.confirm_sweeps,
            missing_sweeps=self.missing_sweeps,
            reshelve_within=self.reshelve_within,
            sweep_timeout=self.sweep_timeout,
            demand_window=self.demand_window,
            holds_per_copy=self.holds_per_copy,
            uses_per_copy=self.uses_per_copy,
            use_absent_sweeps=self.use_absent_sweeps,
        )


__all__ = ["InventoryServiceSettings"]
