"""Extract operators, one per source kind: PostgreSQL, MySQL, REST API, FTP and S3 file drops.

Each only produces a local file; every one of them lands it through :mod:`.landing` (created once in
the ingestion bucket, recorded in the ledger, rows reported). The table extracts share
:mod:`.base`, the file drops (FTP, S3) their per-version bookkeeping in :mod:`.files`.
"""
