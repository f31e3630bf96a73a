"""SenditBatch manifests: validated and defaulted by the CRD's own schema, in every mode.

The CRD (`crds/sendit.dev_senditbatches.yaml`) is the one source of truth for the batch's shape
and defaults; the API server applies it in a cluster, and this module applies the same schema
to a manifest given to `sendit run -f`. (The schema's CEL rules are the API server's to check.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError

CRD_FILE = "sendit.dev_senditbatches.yaml"
API_VERSION = "sendit.dev/v1alpha1"
KIND = "SenditBatch"


def crd_path() -> Path:
    """The CRD shipped in the package (wheel) or, from a source checkout, the repo's crds/."""
    packaged = resources.files("sendit_worker") / "crds" / CRD_FILE
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "crds" / CRD_FILE


@cache
def crd() -> dict[str, Any]:
    return yaml.safe_load(crd_path().read_text())


def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(instance: Any, node: dict[str, Any]) -> Any:
    """Fill in the schema's defaults, as the API server does (returns a new object)."""
    instance = copy.deepcopy(instance)
    if isinstance(instance, dict):
        for name, sub in node.get("properties", {}).items():
            if name not in instance and "default" in sub:
                instance[name] = copy.deepcopy(sub["default"])
            if name in instance:
                instance[name] = apply_defaults(instance[name], sub)
    elif isinstance(instance, list) and "items" in node:
        instance = [apply_defaults(item, node["items"]) for item in instance]
    return instance


@dataclass(frozen=True)
class Batch:
    name: str
    spec: dict[str, Any]
    base: Path  # what relative local paths in the spec are relative to

    @property
    def send(self) -> str:
        return self.spec["send"]

    def folders(self) -> list[Path]:
        """The source folders as local paths (local mode: hostPath is a local folder)."""
        volume = self.spec["source"].get("volume") or {}
        root = Path(volume.get("hostPath", {}).get("path", self.base))
        return [self._local(root, folder) for folder in self.spec["source"]["folders"]]

    def local_file(self, ref: dict[str, Any] | None) -> Path | None:
        """A `{file: ...}` reference as a local path (ConfigMaps are the operator's to mount)."""
        if not ref:
            return None
        if "file" not in ref:
            raise ConfigError("in local mode, recipes and filters are given as file: paths")
        return self._local(self.base, ref["file"])

    def output(self) -> Path | None:
        local = self.spec["destinations"].get("local")
        return self._local(self.base, local["path"]) if local else None

    def _local(self, root: Path, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.base / root / p)


def identifier_service(given: dict[str, Any]) -> dict[str, Any]:
    """An identifierService block with the schema's defaults (for the --identifier-service flag)."""
    node = schema()["properties"]["spec"]["properties"]["deidentify"]["properties"]
    return apply_defaults(given, node["identifierService"])


def load(manifest: dict[str, Any], base: Path) -> Batch:
    if not isinstance(manifest, dict):
        raise ConfigError("the manifest is not a YAML mapping")
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        raise ConfigError(f"the manifest must be apiVersion {API_VERSION}, kind {KIND}")
    defaulted = apply_defaults(manifest, schema())
    errors = sorted(
        jsonschema.Draft7Validator(schema()).iter_errors(defaulted), key=lambda e: e.path
    )
    if errors:
        raise ConfigError(_describe(errors[0]))
    name = str(defaulted.get("metadata", {}).get("name", "batch"))
    return Batch(name=name, spec=defaulted["spec"], base=base)


def _describe(error: jsonschema.ValidationError) -> str:
    """Where and which rule, from the schema only: a manifest value (a folder name, say) may
    identify someone, and this message reaches logs."""
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    if error.validator == "required":
        return f"invalid SenditBatch at {where}: {error.message}"  # names the schema's field
    return (
        f"invalid SenditBatch at {where}: must satisfy {error.validator} {error.validator_value!r}"
    )


def load_file(path: Path) -> Batch:
    try:
        manifest = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the manifest: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"the manifest is not valid YAML: {exc}") from None
    return load(manifest, path.resolve().parent)
