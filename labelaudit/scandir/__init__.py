"""The scan directory: the files a scan writes (:mod:`.layout`) and its SQLite database
(:mod:`.database`), which the review app reads and the review's decisions are appended to."""

from labelaudit.scandir.layout import (MANIFEST_VERSION, SCAN_FOLDER_REASON, ScanDir, ScanManifest, ScanSummary,
                                       other_scan_reason)

__all__ = ["MANIFEST_VERSION", "SCAN_FOLDER_REASON", "ScanDir", "ScanManifest", "ScanSummary", "other_scan_reason"]
