"""Landed files (partner drops, FTP, S3): read them, validate them against a declared schema, and
split their rows into valid rows (Parquet for the load), quarantined rows and rejected files.

- :mod:`.readers`: one landed file -> an Arrow table of raw strings, whatever its format;
- :mod:`.schema`: what a dataset's files must hold (:class:`FileSchema`, declarable from config);
- :mod:`.validate`: raw table + schema -> typed valid rows, quarantined rows with reasons;
- :mod:`.status`: ``etl.file_status``, one row per landed file validated;
- :mod:`.operators`: :class:`ValidateLandedFilesOperator`, the step that does all of it per file.
"""
