"""Where a batch's things are: on a laptop (`LocalPlacement`) or in one pod of its Job
(`PodPlacement`). The batch runner asks; only these answers differ between the two."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sendit_api.errors import Permanent
from sendit_api.names import quarantine_folder
from sendit_api.spec import Batch, FileRef, Source

from ..identifiers.pseudonyms import load_key

log = logging.getLogger("sendit")


@dataclass(frozen=True)
class LocalPlacement:
    """A laptop. Relative paths in the manifest are relative to `base` (the manifest's folder);
    a hostPath volume is a local folder; destinations.local is the output folder itself."""

    base: Path
    key_file: Path | None = None
    workspace_override: Path | None = None  # `sendit send --staging`
    shard: tuple[int, int] = (0, 1)
    planned: bool = False  # one process plans its batch itself
    cleans_source: bool = True
    fresh_workspace: bool = False  # the output folder is the user's: never cleared
    quarantine_dir: Path | None = None  # `sendit run --quarantine`

    def folders(self, source: Source) -> list[Path]:
        root = self._path(self.base, ((source.volume or {}).get("hostPath") or {}).get("path", "."))
        return [self._path(root, folder) for folder in source.folders]

    def config_file(self, ref: FileRef) -> Path:
        if ref.file is None:
            raise Permanent("in local mode, recipes and filters are given as file: paths")
        return self._path(self.base, ref.file)

    def workspace(self, batch: Batch) -> Path:
        """The local destination; else (delivery only) `.sendit/<batch>` beside the manifest,
        where the ledger survives a killed run."""
        if self.workspace_override is not None:
            return self.workspace_override
        local = batch.spec.destinations.local
        if local is not None:
            return self._path(self.base, local.path)
        return self.base / ".sendit" / batch.name

    def plan_file(self, batch: Batch) -> Path | None:
        """A temporary one, made for each run (a rerun on a laptop plans again)."""
        return None

    def local_copy(self, batch: Batch) -> Path | None:
        return None

    def quarantine(self, batch: Batch) -> Path | None:
        return self.quarantine_dir

    def key(self) -> bytes:
        key, created = load_key(self.key_file, default="create")
        if created:
            log.warning(created)
        return key

    @staticmethod
    def _path(root: Path, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else root / p


@dataclass(frozen=True)
class PodPlacement:
    """One pod of a batch's Indexed Job: volumes where the operator mounted them, the key from
    a Secret in the environment, this shard's own corner of the workspace."""

    source: Path  # the source volume (read-only, except for the cleanup stage)
    work: Path  # the workspace volume
    config: Path  # ConfigMaps, each at config/<name>/<key>
    local: Path | None  # the local destination's mount, when the batch has one
    uid: str  # the batch's uid: workspaces of two batches of one name never mix
    shard: tuple[int, int]
    planned: bool = False  # a plan stage made the plan (parallelism above 1)
    cleans_source: bool = False  # the operator's cleanup stage does, once, for every shard
    fresh_workspace: bool = True
    base: None = None  # a cluster's manifest names no local files

    def folders(self, source: Source) -> list[Path]:
        return [self.source / folder.lstrip("/") for folder in source.folders]

    def config_file(self, ref: FileRef) -> Path:
        if ref.config_map_key_ref is None:
            raise Permanent("in a cluster, recipes and filters come from ConfigMaps")
        return self.config / ref.config_map_key_ref.name / ref.config_map_key_ref.key

    def workspace(self, batch: Batch) -> Path:
        return self.work / self.uid / str(self.shard[0])

    def plan_file(self, batch: Batch) -> Path | None:
        """Beside the shards' workspaces, shared by the plan stage and every shard; kept by a
        retry (which reuses it), never cleared as a shard's outputs are."""
        return self.work / self.uid / "plan.sqlite"

    def local_copy(self, batch: Batch) -> Path | None:
        if batch.spec.destinations.local is None:
            return None
        if self.local is None:
            raise Permanent("destinations.local is set but no local folder was mounted")
        return self.local

    def quarantine(self, batch: Batch) -> Path | None:
        """Beside the plan, shared by the shards; only on a workspace that outlives the pods
        (an emptyDir goes with them, and would keep nothing)."""
        return self.work / quarantine_folder(self.uid) if batch.spec.keeps_workspace else None

    def key(self) -> bytes:
        return load_key(None)[0]
