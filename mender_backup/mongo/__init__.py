"""MongoDB access for dump and restore: raw BSON in and out, nothing decoded.

Dump reads each collection as raw batches (`find_raw_batches`), restore inserts
`RawBSONDocument`s built on the archive's bytes: documents are never turned into
Python objects, which keeps both fast and memory flat.
"""
