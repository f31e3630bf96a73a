"""Names both sides use: the API, labels and annotations, where volumes are mounted in a worker
pod, and the environment variables that carry secrets and the shard index into it."""

from __future__ import annotations

from typing import Final

GROUP: Final = "sendit.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "SenditBatch"
PLURAL: Final = "senditbatches"
WATCH_KIND: Final = "SenditWatch"
WATCH_PLURAL: Final = "senditwatches"

BATCH_LABEL: Final = "sendit.dev/batch"
STAGE_LABEL: Final = "sendit.dev/stage"
WATCH_LABEL: Final = "sendit.dev/watch"
SENDS_ANNOTATION: Final = "sendit.dev/sends"  # on a process Job that also delivers
RELEASES_LABEL: Final = "sendit.dev/releases"  # on a release batch: the batch it releases from

# Inside a worker pod. The root filesystem is read-only: TMP is its scratch space.
SOURCE_MOUNT: Final = "/sendit/source"
WORK_MOUNT: Final = "/sendit/work"
CONFIG_MOUNT: Final = "/sendit/config"  # each ConfigMap at CONFIG_MOUNT/<name>/<key>
LOCAL_MOUNT: Final = "/sendit/local"
TMP_MOUNT: Final = "/sendit/tmp"
WORKER_CONTAINER: Final = "worker"
WORKER_UID: Final = 10001  # the worker image's user
# A batch's withheld images, kept for review on its workspace volume (the release batches of
# `sendit review` name this folder as their source).
QUARANTINE_FOLDER: Final = "quarantine"

PSEUDONYM_KEY_ENV: Final = "SENDIT_PSEUDONYM_KEY"
IDENTIFIER_TOKEN_ENV: Final = "SENDIT_IDENTIFIER_TOKEN"
SHARD_INDEX_ENV: Final = "JOB_COMPLETION_INDEX"  # set by Kubernetes in an Indexed Job's pods
# A PACS's DICOMweb credentials (keys of pacs.credentialsSecretRef's Secret, each optional).
PACS_CREDENTIAL_ENV: Final = {
    "username": "SENDIT_PACS_USERNAME",
    "password": "SENDIT_PACS_PASSWORD",
    "token": "SENDIT_PACS_TOKEN",
}
# Its TLS material (keys of the same Secret, each optional), mounted as files at
# PACS_TLS_MOUNT/<key>: each variable holds a PEM file's path (on a laptop, any path).
PACS_TLS_MOUNT: Final = "/sendit/pacs-tls"
PACS_TLS_ENV: Final = {
    "ca.crt": "SENDIT_PACS_CA",  # the CA bundle that signed the PACS's certificate
    "tls.crt": "SENDIT_PACS_CERT",  # a client certificate (and the commitment listener's)
    "tls.key": "SENDIT_PACS_KEY",  # its private key
}


def quarantine_folder(uid: str) -> str:
    """Where a batch's quarantine is, relative to its workspace volume."""
    return f"{uid}/{QUARANTINE_FOLDER}"
