"""On the PYTHONPATH of the tool's subprocesses in tests/test_never_lose.py only (S3 and Azure).

botocore retries an S3 503 up to 8 times (mender_backup/stores/settings.py) with an
exponential back-off of up to 20 s a try, and its adaptive mode slows every later
request after a throttling answer: failing one request past every retry would cost
~30 s, and a test fails dozens in turn. This takes the sleeps out and nothing else:
how many attempts, and which errors are retried, stay botocore's and ours."""

try:
    from botocore.retries import bucket, standard

    standard.ExponentialBackoff.delay_amount = lambda self, context: 0.0
    bucket.TokenBucket.acquire = lambda self, amount=1, block=True: True
except Exception:      # no botocore: nothing to speed up
    pass

try:                   # the same for Azure's SDK (mender_backup/stores/azure.py: 6 retries, 1 s to 33 s apart)
    from azure.storage.blob._shared import policies

    policies.ExponentialRetry.get_backoff_time = lambda self, settings: 0.0
except Exception:
    pass
