"""Exceptions of the libraries underneath (pymongo, botocore, the OS), as our
errors: one line and the exit code it means. Used by every front end (the
command line, the helm plugin), so a failure reads the same in both."""

from __future__ import annotations

from ..errors import EXIT_FAILED, EXIT_UNREACHABLE, IntegrityError, MenderBackupError


def translate(exc: BaseException) -> MenderBackupError:
    if isinstance(exc, MenderBackupError):
        return exc
    mod = type(exc).__module__
    if mod.startswith(("pymongo", "bson")):
        return _mongo(exc)
    if mod.startswith(("botocore", "boto3", "urllib3")):
        from ..stores import s3_error
        return s3_error(exc, "S3")
    if _is_decoder_error(exc):        # (gzip's BadGzipFile is an OSError: before that branch)
        return IntegrityError(f"compressed data is corrupt or truncated ({type(exc).__name__}: {exc})")
    if isinstance(exc, OSError):
        return _error(f"{exc.strerror or exc} ({getattr(exc, 'filename', '') or type(exc).__name__})", EXIT_FAILED)
    return _error(f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED)


def _is_decoder_error(exc: BaseException) -> bool:
    """A decompressor's own error (format/compression.py raises them as integrity errors
    already; this is the net for any read that does not go through it)."""
    import gzip
    import lzma
    import zlib

    import zstandard
    return isinstance(exc, (lzma.LZMAError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError))


def _mongo(exc: BaseException) -> MenderBackupError:
    from pymongo import errors as perr
    if isinstance(exc, (perr.AutoReconnect, perr.ServerSelectionTimeoutError, perr.NetworkTimeout)):
        return _error(f"lost the connection to MongoDB: {type(exc).__name__}: {exc}", EXIT_UNREACHABLE)
    if isinstance(exc, perr.BulkWriteError):
        errs = exc.details.get("writeErrors") or [{}]
        return _error(f"MongoDB refused a write: {errs[0].get('errmsg', 'bulk write error')}", EXIT_FAILED)
    if isinstance(exc, perr.OperationFailure):
        return _error(f"MongoDB error: {exc.details.get('errmsg', exc) if exc.details else exc}", EXIT_FAILED)
    return _error(f"MongoDB error: {type(exc).__name__}: {exc}", EXIT_FAILED)


def _error(message: str, code: int) -> MenderBackupError:
    return MenderBackupError(message, exit_code=code)
