"""The retail pipeline: MySQL reference data, exchange rates, FTP sales files and partner drops."""
