"""Where a restored release reads its artifacts: the bucket (global.storage aws) or the Azure
container (azure) it has, or the one the operator names, set in its values or, where the
release reads it from a Secret of the operator's, in that Secret."""

from __future__ import annotations

from .. import preflight
from ...errors import UsageError
from ...kube.connection import Kube
from . import chart as mender
from .changes import Changes, SecretChange
from .azure_location import URI_KEY, AzureLocation, azure_location
from .live_secrets import live_keys


def repoint_artifacts(kube: Kube, ns: str, mv: mender.MenderValues, req, ch: Changes) -> str | None:
    """-> the artifact store the restore writes to (checked reachable): a bucket's name or
    azure://account/container; `req`: plan.Request."""
    if mv.storage == "azure":
        return _repoint_container(kube, ns, mv, req, ch)
    s3 = live_keys(kube, ns, mv.s3_secret, mender.BUCKET_KEYS)
    old_bucket = mender.bucket_in(s3, mv)
    if req.bucket and req.bucket != old_bucket:
        if mv.user_s3_secret:
            if not s3:
                raise UsageError(f"global.s3.existingSecret {mv.s3_secret} holds neither AWS_BUCKET nor "
                                 f"STORAGE_BUCKET: nothing was changed")
            ch.secrets.append(SecretChange(mv.s3_secret, {k: req.bucket for k in s3},
                                           "global.s3.existingSecret: Mender reads the bucket from it"))
        else:
            ch.values[mender.BUCKET] = req.bucket
        rule = mv.proxy_rule
        if rule:
            moved = mender.proxy_rule_for(rule, old_bucket, req.bucket)
            if moved:
                ch.values[mender.PROXY_RULE] = moved
            else:
                ch.notes.append(f"the storage proxy route {rule!r} does not name the bucket: left as it is")
    target_bucket = (req.bucket or old_bucket or None)
    if target_bucket:
        preflight.check_bucket(target_bucket, req.settings)      # before anything stops
    return target_bucket


def _repoint_container(kube: Kube, ns: str, mv: mender.MenderValues, req, ch: Changes) -> str:
    now = azure_location(kube, ns, mv)
    if req.bucket and req.bucket != now.container:
        # where Mender was given the container's URL it ignores CONTAINER_NAME: both move
        uri = now.container_url(req.bucket) if now.endpoint else ""
        if mv.user_s3_secret:
            ch.secrets.append(SecretChange(mv.s3_secret, {"STORAGE_BUCKET": req.bucket, **({URI_KEY: uri} if uri else {})},
                                           "global.s3.existingSecret: Mender reads the container from it"))
        else:
            ch.values[mender.CONTAINER] = req.bucket
            if uri:
                ch.values[mender.CONTAINER_URI] = uri
    target = AzureLocation(now.account, req.bucket or now.container, now.endpoint).url
    preflight.check_bucket(target, req.settings)      # before anything stops
    return target
