"""``etl.file_status`` as the file validation sees it: the table's owner is the control package.

Re-exported from :mod:`include.etlkit.control.file_status`, which holds the table's SQL, so the
validation and the load keep importing it from here.
"""

from __future__ import annotations

from include.etlkit.control.file_status import COLUMNS, LOADED, STATUSES, FileStatus, FileStatusStore

__all__ = ["COLUMNS", "LOADED", "STATUSES", "FileStatus", "FileStatusStore"]
