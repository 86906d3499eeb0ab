"""The backup format: what is written at a destination, byte by byte.

Nothing here does I/O of its own: archive, compression and digests work on
streams handed to them; layout names the keys; manifest and metadata are the
documents. docs/FORMAT.md is the specification these modules implement.
"""
