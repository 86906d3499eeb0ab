"""The backup format: what is written at a destination, byte by byte.

Archive, compression, encryption and digests work on streams handed to them;
layout names the keys; manifest, metadata, slices (the shipped oplog) and
secrets_bundle are the documents; compat is the compatibility rule they share. No module here opens a connection or a
store. docs/FORMAT.md is the specification these modules implement.
"""
