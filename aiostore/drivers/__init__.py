"""Drivers: the interface (``base``) and one module per backend (``memory``, ``file``, ``s3``,
``http``). Backends are found through the ``aiostore.drivers`` entry points; importing this
package does not import the backends (so aiobotocore loads only when an S3 store exists)."""

from .base import BytesReader as BytesReader
from .base import Driver as Driver
from .base import DriverReader as DriverReader
from .base import DriverSession as DriverSession
from .base import NoOptions as NoOptions
from .base import map_os_error as map_os_error
from .base import parse_options as parse_options
from .base import redacted_options as redacted_options

__all__ = [
    "BytesReader",
    "Driver",
    "DriverReader",
    "DriverSession",
    "NoOptions",
    "map_os_error",
    "parse_options",
    "redacted_options",
]
