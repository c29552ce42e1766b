"""The totesys pipeline: the "Terrific Totes" operational database into the warehouse star schemas.

- :mod:`.model`: one pure function per warehouse table, source frames in, load-ready frame out.
"""
