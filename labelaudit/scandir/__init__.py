"""The scan directory: the files a scan writes and the SQLite database the review app reads."""
