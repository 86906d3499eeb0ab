"""The companion release: our backup chart installed next to a Mender release,
reading the Mender release's own Secrets; and a one-off Job made from its CronJob."""

from __future__ import annotations

from collections.abc import Mapping

from ruamel.yaml import YAML

from ...errors import NotFoundError, UsageError
from ..preflight import check_destination
from .cron import check_schedule
from .azure_location import AzureLocation
from .chart import AZURE_KEYS, MenderValues, SecretKeys
from ...kube.helm import Helm, ReleaseInfo

COMPANION_SUFFIX = "-backup"


def companion_name(release: str) -> str:
    return f"{release}{COMPANION_SUFFIX}"


def companion_destination(helm: Helm, info: ReleaseInfo) -> str:
    """Where the release's backups are: the companion release's destination.url."""
    name = companion_name(info.name)
    try:
        values = helm.get_all_values(name, namespace=info.namespace or None)
    except NotFoundError:
        values = {}
    url = (values.get("destination") or {}).get("url")
    if not url:
        raise NotFoundError(f"no backup release {name} to read destination.url from: pass --destination")
    return url


def companion_values(info: ReleaseInfo, mender: MenderValues, keys: SecretKeys, *, destination: str,
                     schedule: str | None = None, compression: str | None = None,
                     image: str | None = None, azure: AzureLocation | None = None) -> dict:
    """Values for our chart that back up the Mender release `info`. No credential is
    copied: the CronJob reads the very Secrets Mender's own pods read (so a credential
    rotation reaches both), and only keys those Secrets hold (`keys`, read from the
    cluster): with IRSA there are no static S3 keys, and the CronJob runs as the
    service account whose role reaches the bucket. `azure`: where a release on Azure keeps
    its artifacts (azure_location.py)."""
    if mender.storage not in ("aws", "azure"):
        raise UsageError(f"the release stores artifacts in {mender.storage!r} (global.storage): only aws and azure "
                         f"are supported")
    check_destination(destination)
    access, secret = keys.static_keys()
    values: dict = {
        "destination": {"url": destination},
        "mongodb": {"existingSecret": mender.mongodb_secret, "existingSecretKey": keys.mongodb_url_key(), "url": ""},
        "menderRelease": {"chart": info.chart, "chartVersion": info.version, "appVersion": info.app_version},
    }
    if mender.storage == "azure":
        if azure is None:
            raise UsageError("the release stores artifacts in Azure: its storage account is needed")
        values["azure"] = _azure_values(azure, mender, keys)
    else:
        bucket = keys.bucket_key()
        values["s3"] = {"existingSecret": mender.s3_secret,
                        "existingSecretKeys": {"accessKeyId": access, "secretAccessKey": secret, "bucket": bucket,
                                               "endpoint": "AWS_URI" if "AWS_URI" in keys.s3 else "",
                                               "region": "AWS_REGION" if "AWS_REGION" in keys.s3 else ""},
                        "skipArtifacts": not bucket}
    if mender.service_account and not access:
        values["serviceAccount"] = {"create": False, "name": mender.service_account}
    if schedule:
        values["schedule"] = check_schedule(schedule)
    if compression:
        values["compression"] = compression
    if image:
        values["image"] = image_values(image)
    return values


def image_values(image: str) -> dict:
    """--image repository[:tag] or repository@sha256:...; digest "" otherwise: a released
    chart's stamped digest names the published image, not this one."""
    if "@" in image:
        repo, _, digest = image.partition("@")
        return {"repository": repo, "digest": digest}
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    return {"repository": repo, "tag": tag, "digest": ""} if tag else {"repository": image, "digest": ""}


def _azure_values(azure: AzureLocation, mender: MenderValues, keys: SecretKeys) -> dict:
    """Our chart's azure block for a release on Azure Blob Storage: the account, container and
    endpoint as the release names them (not secrets), the credentials as references to the keys
    its Secret holds."""
    azure.check_followable()
    live = "STORAGE_BUCKET" in keys.s3      # read live: a restore into a new container moves the backups too
    return {"account": azure.account, "blobEndpoint": azure.endpoint, "container": "" if live else azure.container,
            "existingSecret": mender.s3_secret,
            "existingSecretKeys": {"container": "STORAGE_BUCKET" if live else "",
                                   **{name: key if key in keys.s3 else "" for name, key in AZURE_KEYS.items()}}}


def cronjob_from_manifest(manifest: str) -> dict:
    """The (first) CronJob of a rendered manifest, e.g. `helm get manifest` output."""
    y = YAML(typ="safe")
    cronjobs = [d for d in y.load_all(manifest) if isinstance(d, dict) and d.get("kind") == "CronJob"]
    if not cronjobs:
        raise NotFoundError("no CronJob in the backup release's manifest")
    return cronjobs[0]


def job_from_cronjob_object(cj: Mapping, suffix: str) -> dict:
    """A one-off Job made from a CronJob object as `kubectl create job
    --from=cronjob/NAME` makes it: the job template's labels, annotations and
    spec, and, for a CronJob read from the API (it has a uid), an ownerReference
    to it, so the CronJob's history limits and deletion cover the Job too."""
    tmpl = cj["spec"]["jobTemplate"]
    tmeta = tmpl.get("metadata") or {}
    name = f"{cj['metadata']['name'][:52 - len(suffix)]}-{suffix}"
    meta: dict = {"name": name,
                  "labels": dict(tmeta.get("labels") or {}),
                  "annotations": {**(tmeta.get("annotations") or {}), "cronjob.kubernetes.io/instantiate": "manual"}}
    if cj["metadata"].get("namespace"):
        meta["namespace"] = cj["metadata"]["namespace"]
    if cj["metadata"].get("uid"):
        # not metav1.NewControllerRef: blockOwnerDeletion would need cronjobs/finalizers rights (as kubectl)
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cj["metadata"]["name"],
                                    "uid": cj["metadata"]["uid"], "controller": True}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": dict(tmpl["spec"])}


def job_from_cronjob(manifest: str, suffix: str) -> dict:
    """A one-off Job built from the CronJob in a rendered manifest, as
    `kubectl create job --from=cronjob/NAME` would make it."""
    return job_from_cronjob_object(cronjob_from_manifest(manifest), suffix)


def start_job(kube, namespace: str, manifest: str, suffix: str, env: Mapping[str, str] | None = None) -> str:
    """`helm mender-backup run`: a Job made from the live companion CronJob (what the cluster would
    run on schedule, with its uid for the ownerReference) created in `namespace`, with `env` set
    in its containers over the CronJob's (the upgrade guard's tags); -> its name."""
    name = cronjob_from_manifest(manifest)["metadata"]["name"]
    with kube.call(f"reading CronJob {namespace}/{name}"):
        cronjob = kube.api.sanitize_for_serialization(kube.batch.read_namespaced_cron_job(name, namespace))
    job = job_from_cronjob_object(cronjob, suffix)
    job["metadata"]["namespace"] = namespace
    for c in job["spec"]["template"]["spec"]["containers"] if env else []:
        c["env"] = [e for e in c.get("env") or [] if e.get("name") not in env] + \
                   [{"name": k, "value": v} for k, v in env.items()]
    with kube.call(f"creating a Job in {namespace}"):
        return kube.batch.create_namespaced_job(namespace, job).metadata.name
