"""Where and how a data-set job runs on Ray; kept free of Ray imports so that options can be checked
(and jobs run locally) where Ray is not installed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RayOptions:
    # None: what ray.init() finds (RAY_ADDRESS, a cluster started on this machine with `ray start`),
    # else a new local cluster; "auto": only an existing cluster; or "host:port" of a head node
    address: str | None = None
    gpus_per_actor: float = 0.0  # GPUs per actor (each actor then runs the model on its GPU)
    actors: int | None = None  # default: as many as the cluster's GPUs (or CPUs) hold
    cpus_per_actor: float = 1.0  # CPUs per actor, also its torch threads

    def __post_init__(self) -> None:
        if self.gpus_per_actor < 0:
            raise ValueError(f"gpus_per_actor must be >= 0, got {self.gpus_per_actor} (CLI: --ray-gpus)")
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"actors must be >= 1, got {self.actors} (CLI: --ray-actors)")
        if self.cpus_per_actor <= 0:
            raise ValueError(f"cpus_per_actor must be > 0, got {self.cpus_per_actor}")

    @classmethod
    def parse(cls, value) -> "RayOptions | None":
        """``ray=`` of ``audit``/``evaluate``: None or False (run here), True, an address, or RayOptions."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, str):
            return cls(address=value or None)
        if isinstance(value, cls):
            return value
        raise TypeError(f"ray= takes True, a cluster address ('host:port') or RayOptions, not {type(value).__name__}")
