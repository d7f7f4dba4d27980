"""Capabilities, split by concern: ``flags`` (the bitmask), ``state`` (three layers, change
events), ``check`` (the check routine's table) and ``probe`` (health probing). ``flags`` and
``state`` depend on nothing else in aiostore; ``check`` and ``probe`` use ``aiostore.errors``,
so they are imported from their modules, not from here."""

from .flags import Capability as Capability
from .state import CapabilityChange as CapabilityChange
from .state import CapabilitySnapshot as CapabilitySnapshot

__all__ = ["Capability", "CapabilityChange", "CapabilitySnapshot"]
