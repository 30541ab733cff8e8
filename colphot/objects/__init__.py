"""6. The wide Object table: one row per object, every band side by side (Rubin's names)."""

from colphot.objects.build import object_frame
from colphot.objects.write import object_table, open_objects

__all__ = ["object_frame", "object_table", "open_objects"]
