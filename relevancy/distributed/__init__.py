"""Data-set jobs (``audit``, ``evaluate``) on a Ray cluster. Ray is imported only by
``relevancy.distributed.ray_backend``, which runs only when a job is given ``ray=``."""

from .options import RayOptions

__all__ = ["RayOptions"]
