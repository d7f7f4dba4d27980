"""Drivers: the interface (``base``) and one module per backend (``memory``, ``file``, ``s3``,
``http``). Backends are found through the ``aiostore.drivers`` entry points; importing this
package does not import the backends (so aiobotocore loads only when an S3 store exists)."""

from .base import Driver as Driver
from .base import DriverReader as DriverReader
from .base import DriverSession as DriverSession
from .base import map_os_error as map_os_error
from .base import parse_options as parse_options

__all__ = ["Driver", "DriverReader", "DriverSession", "map_os_error", "parse_options"]
