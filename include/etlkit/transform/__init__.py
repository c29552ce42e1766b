"""Declared models run on polars' streaming engine: landed Parquet in, warehouse tables out."""
