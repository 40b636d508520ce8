"""Observed lineage mapped onto the inventory: which workflow read or wrote which asset, when.

Stored OpenLineage observations (`Store.lineage_edges`, `Store.lineage_jobs`) name jobs and
datasets as the events did. Here a job becomes a workflow (`lineage_job:` on the workflow,
as `namespace/name` or a bare name; else a job whose name is the workflow id) and a dataset
becomes an asset (`scanner.lineage.naming`). The rules compare that with what is declared.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scanner.inventory import Inventory, WorkflowConfig

DEFAULT_UNOBSERVED_AFTER = 30 * 86400.0   # seconds: `unobserved_after` when a workflow does not say


@dataclass(frozen=True)
class ObservedEdge:
    """One (job, direction, dataset) as observed, mapped to a workflow and an asset when known."""

    job: str                              # namespace/name
    direction: str                        # input, output
    dataset: str                          # namespace/name, as the events wrote it
    first_seen: datetime
    last_seen: datetime
    events: int
    last_event_type: str | None
    workflows: tuple[str, ...] = ()
    asset: tuple[str, str] | None = None

    @property
    def asset_id(self) -> str | None:
        """`source:path` of the asset, if the dataset maps to one."""
        return f"{self.asset[0]}:{self.asset[1]}" if self.asset else None


@dataclass(frozen=True)
class JobSeen:
    """When a workflow's job was first and last seen."""

    job: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class ObservedLineage:
    """Everything observed, mapped; empty when nothing was ever received."""

    edges: tuple[ObservedEdge, ...] = ()
    jobs: Mapping[str, JobSeen] = field(default_factory=dict)   # workflow id -> its job, seen

    def inputs(self, workflow_id: str) -> list[ObservedEdge]:
        """The observed reads of a workflow that map to an asset."""
        return [e for e in self.edges if e.direction == "input" and e.asset and workflow_id in e.workflows]

    def outputs(self, workflow_id: str) -> list[ObservedEdge]:
        """The observed writes of a workflow that map to an asset."""
        return [e for e in self.edges if e.direction == "output" and e.asset and workflow_id in e.workflows]


def unobserved_after(workflow: WorkflowConfig) -> float:
    """How long a declared read may go unobserved (seconds)."""
    return workflow.unobserved_after or DEFAULT_UNOBSERVED_AFTER


def job_matcher(workflows: Mapping[str, WorkflowConfig]) -> Any:
    """(namespace, name) -> the ids of the workflows that job is."""
    by_job: dict[str, list[str]] = {}
    claimed: set[str] = set()
    for workflow_id in sorted(workflows):
        job = workflows[workflow_id].lineage_job
        if job:
            by_job.setdefault(job, []).append(workflow_id)
            claimed.add(workflow_id)

    def match(namespace: str, name: str) -> tuple[str, ...]:
        found = by_job.get(f"{namespace}/{name}") or by_job.get(name)
        if found:
            return tuple(found)
        if name in workflows and name not in claimed:
            return (name,)
        return ()

    return match


def _time(value: Any) -> datetime:
    from scanner.store import parse_time

    parsed = parse_time(value) if isinstance(value, str) else value
    assert isinstance(parsed, datetime)
    return parsed


def observe(inventory: Inventory, edge_rows: Iterable[Mapping[str, Any]],
            job_rows: Iterable[Mapping[str, Any]]) -> ObservedLineage:
    """Map stored observations onto the inventory's workflows and assets."""
    from scanner.lineage.naming import DatasetMapper

    match = job_matcher(inventory.workflows)
    mapper = DatasetMapper(inventory.sources, str(inventory.base_dir))
    edges = []
    for row in edge_rows:
        edges.append(ObservedEdge(
            job=f"{row['job_namespace']}/{row['job_name']}", direction=row["direction"],
            dataset=f"{row['dataset_namespace']}/{row['dataset_name']}",
            first_seen=_time(row["first_seen"]), last_seen=_time(row["last_seen"]), events=int(row["events"]),
            last_event_type=row.get("last_event_type"), workflows=match(row["job_namespace"], row["job_name"]),
            asset=mapper.asset(row["dataset_namespace"], row["dataset_name"])))
    jobs: dict[str, JobSeen] = {}
    for row in job_rows:
        seen = JobSeen(f"{row['job_namespace']}/{row['job_name']}", _time(row["first_seen"]), _time(row["last_seen"]))
        for workflow_id in match(row["job_namespace"], row["job_name"]):
            known = jobs.get(workflow_id)
            if known is None:
                jobs[workflow_id] = seen
            else:   # several jobs are one workflow: it was seen from the first to the last
                jobs[workflow_id] = JobSeen(known.job, min(known.first_seen, seen.first_seen),
                                            max(known.last_seen, seen.last_seen))
    return ObservedLineage(tuple(edges), jobs)


def load_observed(inventory: Inventory, store: Any) -> ObservedLineage:
    """The store's observations mapped onto the inventory (empty for a store without any)."""
    jobs = store.lineage_jobs()
    if not jobs:
        return ObservedLineage()
    return observe(inventory, store.lineage_edges(), jobs)


def declares(workflow: WorkflowConfig, source_id: str, path: str, access: str | None = None) -> bool:
    """Whether the workflow declares a read of the asset (by id or glob), with `access` if given."""
    for read in workflow.reads:
        if read.source != source_id:
            continue
        if read.path == path or (read.is_glob and fnmatch.fnmatchcase(path, read.path)):
            if access is None or read.access == access:
                return True
    return False


def recent(edge: ObservedEdge, now: datetime, window: float) -> bool:
    """Whether an observation is within `window` seconds of now."""
    return edge.last_seen >= now - timedelta(seconds=window)
