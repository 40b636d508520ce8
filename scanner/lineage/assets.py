"""`derived_from:` on asset overrides: validation, and the asset-to-asset lineage it declares.

An asset override may say which assets it is built from (a dbt model from its sources, an
extract from a table, a vector index from a folder of articles):

    sources:
      - id: kb-index
        assets: [{path: support_docs, derived_from: ["kb:articles"]}]

Each entry is an asset id (`SOURCE:PATH`, no glob). The override's own path may be a glob:
it then declares the lineage of every scanned asset it matches. Data flows from the
upstream asset to the derived one, so a workflow that reads the derived asset depends on the
upstream one: `feeds`, `depends`, `why`, the SLA and the stale rule all follow it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections import deque
from collections.abc import Iterable, Mapping

from scanner.plugins import SourceConfig

AssetKey = tuple[str, str]   # (source id, path)


def is_glob(path: str) -> bool:
    """Whether an asset path is a pattern."""
    return any(ch in path for ch in "*?[")


def split_asset_id(asset_id: str) -> AssetKey:
    """`crm:public.customers` -> ("crm", "public.customers")."""
    source_id, _, path = asset_id.partition(":")
    return source_id, path


def declared_paths(source: SourceConfig, reads: Iterable[str] = ()) -> set[str]:
    """The asset paths of a source that the inventory names: overrides, reads, S3 prefixes."""
    paths = {o.path for o in source.assets if not is_glob(o.path)}
    paths.update(p for p in reads if not is_glob(p))
    for prefix in source.settings.get("prefixes") or ():
        paths.add(str(prefix))
    return paths


def check_derived_from(sources: Mapping[str, SourceConfig],
                       read_paths: Mapping[str, set[str]]) -> list[tuple[str, int, int, str]]:
    """Problems with `derived_from` entries: (source id, override index, entry index, message).

    An entry must name a declared source; a path the inventory does not name is accepted
    (the scan decides whether it exists) unless it is close to one that it does name, which
    is most likely a typo and is refused with a did-you-mean. A cycle is refused.
    """
    problems: list[tuple[str, int, int, str]] = []
    known: dict[str, set[str]] = {}
    for source_id, source in sources.items():
        known[source_id] = declared_paths(source, read_paths.get(source_id, ()))
    for source_id in sorted(sources):
        for i, override in enumerate(sources[source_id].assets):
            for j, entry in enumerate(override.derived_from):
                upstream_source, sep, path = entry.partition(":")
                if not sep or not upstream_source or not path:
                    problems.append((source_id, i, j, f"{entry!r} is not an asset id "
                                     "(write SOURCE:PATH, e.g. crm:public.customers)"))
                    continue
                if is_glob(path):
                    problems.append((source_id, i, j, f"{entry!r} is a glob; derived_from names "
                                     "assets one by one"))
                    continue
                if upstream_source not in sources:
                    close = difflib.get_close_matches(upstream_source, list(sources), n=1)
                    hint = f" (did you mean {close[0] + ':' + path!r}?)" if close else ""
                    problems.append((source_id, i, j, f"derived_from names unknown asset {entry!r}: "
                                     f"no source {upstream_source!r}{hint}"))
                    continue
                names = known[upstream_source]
                if path not in names and not any(fnmatch.fnmatchcase(path, o.path)
                                                 for o in sources[upstream_source].assets):
                    close = difflib.get_close_matches(path, sorted(names), n=1, cutoff=0.8)
                    if close:
                        problems.append((source_id, i, j, f"derived_from names unknown asset {entry!r} "
                                         f"(did you mean {upstream_source + ':' + close[0]!r}?)"))
                        continue
                if upstream_source == source_id and path == override.path:
                    problems.append((source_id, i, j, f"{entry!r} cannot be derived from itself"))
    if not problems:
        cycle = derivation_cycle(sources)
        if cycle:
            source_id, index = _override_of(sources, cycle[0])
            problems.append((source_id, index, 0, f"cycle in derived_from: {' -> '.join(cycle)}"))
    return problems


def _override_of(sources: Mapping[str, SourceConfig], asset_id: str) -> tuple[str, int]:
    source_id, path = split_asset_id(asset_id)
    for i, override in enumerate(sources[source_id].assets):
        if override.path == path:
            return source_id, i
    return source_id, 0


def declared_edges(sources: Mapping[str, SourceConfig]) -> list[tuple[str, str]]:
    """(derived asset id, upstream asset id) for each entry, the derived side as written."""
    edges = []
    for source_id in sorted(sources):
        for override in sources[source_id].assets:
            for entry in override.derived_from:
                edges.append((f"{source_id}:{override.path}", entry))
    return edges


def derivation_cycle(sources: Mapping[str, SourceConfig]) -> list[str] | None:
    """A cycle through derived_from (derived -> upstream -> ...), as asset ids, or None.

    A glob override is matched against the exact ids the inventory names, so
    `a:x* derived_from b:y` and `b:y derived_from a:x1` make a cycle.
    """
    edges: dict[str, set[str]] = {}
    globs: list[tuple[str, str]] = []
    for derived, upstream in declared_edges(sources):
        if is_glob(split_asset_id(derived)[1]):
            globs.append((derived, upstream))
        else:
            edges.setdefault(derived, set()).add(upstream)
    named = set(edges) | {u for targets in edges.values() for u in targets} | {u for _, u in globs}
    for pattern, upstream in globs:
        for asset_id in named:
            if fnmatch.fnmatchcase(asset_id, pattern):
                edges.setdefault(asset_id, set()).add(upstream)
    white, grey, black = 0, 1, 2
    colour: dict[str, int] = {}
    for start in sorted(edges):
        if colour.get(start, white) != white:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(edges.get(start, ())))]
        path = [start]
        colour[start] = grey
        while stack:
            node, todo = stack[-1]
            if not todo:
                colour[node] = black
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop(0)
            state = colour.get(nxt, white)
            if state == grey:
                return path[path.index(nxt):] + [nxt]
            if state == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append((nxt, sorted(edges.get(nxt, ()))))
    return None


def derived_children(sources: Mapping[str, SourceConfig],
                     scanned: Mapping[str, Iterable[str]]) -> dict[AssetKey, list[AssetKey]]:
    """upstream asset -> the assets derived from it directly, globs resolved against `scanned`
    (source -> the paths of its newest snapshot)."""
    children: dict[AssetKey, set[AssetKey]] = {}
    for source_id in sorted(sources):
        for override in sources[source_id].assets:
            if not override.derived_from:
                continue
            if is_glob(override.path):
                matched = [p for p in scanned.get(source_id, ()) if fnmatch.fnmatchcase(p, override.path)]
            else:
                matched = [override.path]
            for entry in override.derived_from:
                upstream = split_asset_id(entry)
                for path in matched:
                    if (source_id, path) != upstream:
                        children.setdefault(upstream, set()).add((source_id, path))
    return {key: sorted(value) for key, value in children.items()}


def downstream_assets(children: Mapping[AssetKey, list[AssetKey]],
                      start: AssetKey) -> dict[AssetKey, tuple[str, ...]]:
    """Every asset derived from `start`, transitively, with the shortest chain of asset ids
    from `start` to it (`("kb:articles", "kb-index:support_docs")`)."""
    found: dict[AssetKey, tuple[str, ...]] = {}
    todo: deque[tuple[AssetKey, tuple[str, ...]]] = deque([(start, (f"{start[0]}:{start[1]}",))])
    while todo:
        current, chain = todo.popleft()
        for child in children.get(current, ()):
            if child == start or child in found:
                continue
            found[child] = chain + (f"{child[0]}:{child[1]}",)
            todo.append((child, found[child]))
    return found

