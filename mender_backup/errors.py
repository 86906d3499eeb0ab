"""Error types and the exit codes they map to.

Every failure the user can cause or meet is one of these: the CLI prints its
message on one line and exits with its code, never a traceback.
"""

EXIT_FAILED = 1        # the operation ran and failed (server error, upload failed, ...)
EXIT_USAGE = 2         # bad input: flags, URLs, values files
EXIT_NOT_FOUND = 3     # unknown backup id, missing manifest, unknown release
EXIT_CONFLICT = 4      # lock held, non-empty target without --drop
EXIT_INTEGRITY = 5     # checksum, count or digest mismatch; corrupt archive
EXIT_UNREACHABLE = 6   # cannot connect or authenticate; encryption key missing or wrong
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2, as a shell reports it
EXIT_TERMINATED = 143   # SIGTERM (a pod's deadline, an eviction): 128 + 15

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 failed; 2 bad input; 3 not found; 4 conflict "
    "(lock held, target not empty); 5 integrity check failed; 6 cannot connect "
    "or authenticate, or the encryption key is missing or wrong; 130 interrupted by SIGINT, "
    "143 terminated by SIGTERM (both cleaned up: partial archive removed, upload aborted, lock released)."
)


class Terminated(BaseException):
    """A signal asked the run to stop (SIGTERM: exit 143; SIGINT: exit 130); raised in the
    main thread by the handler `signals.install` sets. A BaseException, as KeyboardInterrupt
    is: no `except Exception` on its way up can swallow it, while `with` blocks and
    `except BaseException: ...; raise` clean up as it passes."""

    def __init__(self, signum: int):
        import signal
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        name = signal.Signals(signum).name
        super().__init__(f"{'interrupted' if signum == signal.SIGINT else 'terminated'} ({name})")


class MenderBackupError(Exception):
    exit_code = EXIT_FAILED

    def __init__(self, message: str = "", exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(MenderBackupError):
    exit_code = EXIT_USAGE


class NotFoundError(MenderBackupError):
    exit_code = EXIT_NOT_FOUND


class ConflictError(MenderBackupError):
    exit_code = EXIT_CONFLICT


class IntegrityError(MenderBackupError):
    exit_code = EXIT_INTEGRITY


class UnreachableError(MenderBackupError):
    exit_code = EXIT_UNREACHABLE


class EncryptionKeyError(UnreachableError):
    """An encrypted backup and no key for it (none given, or not the one it needs)."""


class InvalidManifestError(IntegrityError):
    """A manifest or oplog slice manifest that does not follow its JSON Schema
    (mender_backup/format/schemas/): refused before any field of it is trusted."""
