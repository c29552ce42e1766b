"""Extract operators, one per source kind: PostgreSQL, MySQL, REST API and FTP.

Each lands immutable files in the ingestion bucket and records them in the ledger.
"""
