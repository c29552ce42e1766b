"""Extract operators, one per source kind: PostgreSQL, MySQL, REST API, FTP and S3 file drops.

Each lands immutable files in the ingestion bucket and records them in the ledger; the file drops
(FTP, S3) share their bookkeeping in :mod:`include.etlkit.extract.files`.
"""
