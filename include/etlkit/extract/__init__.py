"""Extract operators, one per source kind. Each lands immutable files in the ingestion bucket."""
