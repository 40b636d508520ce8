"""The `s3` connector: an S3 bucket's prefixes, how fresh they are, who owns and who can reach them.

Assets are the configured `prefixes` (path as written, e.g. `articles/`), else every
first-level prefix of the bucket (`Delimiter="/"`). Objects that sit directly at the bucket
root, outside any first-level prefix, become one more asset, `(root)`, so that nothing in the
bucket is left out of the inventory; a name that does not end in `/` cannot collide with a
first-level prefix. With configured prefixes only those are listed.

Each prefix is listed page by page (prefixes concurrently, on a small thread pool) and reports
object count, total bytes, newest and oldest LastModified and storage classes. `max_objects`
caps the objects listed per prefix; a capped prefix and the snapshot say they are partial.
Freshness is the newest LastModified (method `metadata`); an empty prefix has method `none`.

Access comes from the bucket itself:

- the bucket ACL: every grantee becomes a grant; AllUsers / AuthenticatedUsers are the public
  principals `allUsers` / `allAuthenticatedUsers`;
- the bucket policy: each Allow statement's principals x actions become grants, scoped to the
  whole bucket or to the assets whose prefix the statement's Resource pins. Principal `*`, an
  account wildcard or `NotPrincipal`, without a condition that pins an account, organisation,
  source or network, is public;
- `GetBucketPolicyStatus` cross-checks the policy: when AWS says public and the statements did
  not, a public grant is added (AWS's own evaluation wins over ours when it is stricter);
- the bucket's and the account's public-access blocks and the ownership controls. A public
  grant that a block neutralises (IgnorePublicAcls / BucketOwnerEnforced for ACLs,
  RestrictPublicBuckets for policies) is NOT emitted as a grant, because it is no access path;
  the snapshot's notes say what was neutralised and by what.

"Not set" answers (NoSuchBucketPolicy, NoSuchTagSet, NoSuchPublicAccessBlockConfiguration,
OwnershipControlsNotFoundError) mean not set. AccessDenied (or an endpoint that does not
implement the call) on any one of them is recorded as unknown in the notes and in each
asset's `access` property, never as safe: an unknown block is treated as absent, so public
grants stay public. `reports_grants` is False only when neither the ACL nor the policy could
be read.

The bucket owner comes from the tag `owner_tag` (`DiscoveredOwner(value, "tag:KEY")`).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from connectors._principals import alias_memberships, s3_principal
from scanner.errors import ProbeError
from scanner.model import (
    ACCESS_ADMIN,
    ACCESS_OTHER,
    ACCESS_READ,
    ACCESS_WRITE,
    METHOD_METADATA,
    METHOD_NONE,
    PUBLIC_PRINCIPALS,
    SCOPE_ASSET,
    SCOPE_SOURCE,
    Asset,
    DiscoveredOwner,
    FreshnessObservation,
    Grant,
    Membership,
    Principal,
    SourceSnapshot,
)
from scanner.plugins import Connector, ProbeContext, Setting
from scanner.redact import redact_text

T = TypeVar("T")

ROOT_ASSET = "(root)"
PAGE_SIZE = 1000
MAX_ATTEMPTS = 4
BACKOFF_SECONDS = 0.25

ALL_USERS_URI = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS_URI = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"

NOT_SET_CODES = {
    "policy": {"NoSuchBucketPolicy"},
    "policy_status": {"NoSuchBucketPolicy"},
    "tags": {"NoSuchTagSet"},
    "public_access_block": {"NoSuchPublicAccessBlockConfiguration"},
    "account_public_access_block": {"NoSuchPublicAccessBlockConfiguration"},
    "ownership_controls": {"OwnershipControlsNotFoundError"},
}
# Answers that mean "you may not know this" or "this endpoint does not do this": unknown.
UNKNOWN_CODES = {"AccessDenied", "403", "AllAccessDisabled", "NotImplemented", "501",
                 "MethodNotAllowed", "405", "UnsupportedOperation", "XNotImplemented"}

CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                    "TokenRefreshRequired", "InvalidClientTokenId", "UnrecognizedClientException"}
DENIED_CODES = {"AccessDenied", "403", "AllAccessDisabled", "AccountProblem", "Forbidden"}
NOT_FOUND_CODES = {"NoSuchBucket", "404", "NotFound", "NoSuchKey"}
THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                  "TooManyRequests", "429", "RequestThrottled", "TooManyRequestsException",
                  "ServiceUnavailable", "503"}
TRANSIENT_CODES = {"InternalError", "500", "502", "504", "RequestTimeout", "RequestTimeTooSkewed"}

# ACL permission -> coarse access.
ACL_ACCESS = {"READ": ACCESS_READ, "WRITE": ACCESS_WRITE, "READ_ACP": ACCESS_OTHER,
              "WRITE_ACP": ACCESS_ADMIN, "FULL_CONTROL": ACCESS_ADMIN}

# Representative S3 actions, so that wildcards such as `s3:Put*` or `s3:*Object` classify by
# the strongest action they can match.
ADMIN_ACTIONS = ("s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutBucketAcl", "s3:PutObjectAcl",
                 "s3:PutObjectVersionAcl", "s3:PutBucketPublicAccessBlock",
                 "s3:PutAccountPublicAccessBlock", "s3:PutBucketOwnershipControls",
                 "s3:DeleteBucket", "s3:PutAccessPointPolicy", "s3:BypassGovernanceRetention")
WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:RestoreObject",
                 "s3:AbortMultipartUpload", "s3:PutObjectTagging", "s3:DeleteObjectTagging",
                 "s3:PutObjectRetention", "s3:PutObjectLegalHold", "s3:ReplicateObject",
                 "s3:ReplicateDelete", "s3:PutBucketTagging", "s3:PutLifecycleConfiguration",
                 "s3:PutBucketVersioning", "s3:PutReplicationConfiguration", "s3:CreateBucket",
                 "s3:PutEncryptionConfiguration", "s3:PutBucketCORS", "s3:PutBucketWebsite")
READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions",
                "s3:GetObjectAttributes", "s3:GetObjectTagging", "s3:GetBucketLocation",
                "s3:ListBucketMultipartUploads", "s3:ListMultipartUploadParts", "s3:GetBucketPolicy",
                "s3:GetBucketAcl", "s3:GetObjectAcl")

# Condition keys that, with fixed values, keep a `*` principal from being public (AWS's own
# rule for "public" in the policy-status evaluation).
PINNING_CONDITION_KEYS = {"aws:principalaccount", "aws:principalorgid", "aws:principalarn",
                          "aws:sourceaccount", "aws:sourcearn", "aws:sourceowner", "aws:sourcevpc",
                          "aws:sourcevpce", "aws:userid", "aws:sourceip", "aws:principalorgpaths",
                          "s3:dataaccesspointaccount", "s3:dataaccesspointarn"}


_loader_lock = threading.Lock()
_shared_loader: Any = None


def shared_data_loader() -> Any:
    """One botocore data loader for every probe in this process.

    A new boto3 session reloads and parses the S3, STS and S3 Control service models (100 ms
    or more per probe); sessions stay per source, for their credentials, but share the parsed
    models.
    """
    global _shared_loader
    with _loader_lock:
        if _shared_loader is None:
            import botocore.session

            _shared_loader = botocore.session.Session().get_component("data_loader")
        return _shared_loader


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def classify_action(action: str) -> str:
    """The coarse access an S3 policy action (wildcards allowed) can give."""
    pattern = action.strip()
    if pattern == "*":
        return ACCESS_ADMIN
    lowered = pattern.lower()
    if not lowered.startswith("s3:"):
        return ACCESS_OTHER

    def matches(candidates: Iterable[str]) -> bool:
        return any(fnmatch.fnmatchcase(c.lower(), lowered) for c in candidates)

    if matches(ADMIN_ACTIONS):
        return ACCESS_ADMIN
    if matches(WRITE_ACTIONS):
        return ACCESS_WRITE
    if matches(READ_ACTIONS):
        return ACCESS_READ
    verb = lowered[3:]
    if verb.startswith(("get", "list", "describe")):
        return ACCESS_READ
    if verb.startswith(("put", "delete", "restore", "abort", "replicate", "create", "object")):
        return ACCESS_WRITE
    return ACCESS_OTHER


def error_code(exc: Any) -> str:
    """The error code of a botocore ClientError, or its HTTP status when there is none."""
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    if not code:
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    return str(code)


def pinning_condition(condition: Any) -> str | None:
    """The condition clause that pins the caller to fixed accounts, sources or networks, as text.

    None when nothing pins it: negated operators, `...IfExists`, wildcard values and an
    open network range do not restrict who may call.
    """
    if not isinstance(condition, Mapping):
        return None
    for operator, clauses in condition.items():
        op = str(operator)
        if op.startswith(("StringNot", "ArnNot", "NotIp")) or op.endswith("IfExists") or op == "Null":
            continue
        if not isinstance(clauses, Mapping):
            continue
        for key, values in clauses.items():
            if str(key).lower() not in PINNING_CONDITION_KEYS:
                continue
            fixed = [str(v) for v in _as_list(values)]
            if not fixed:
                continue
            if op.startswith(("StringLike", "ArnLike")) and any("*" in v or "?" in v for v in fixed):
                continue
            if str(key).lower() == "aws:sourceip" and any(v in ("0.0.0.0/0", "::/0") for v in fixed):
                continue
            return f"{key}={'|'.join(fixed)}"
    return None


@dataclass(frozen=True)
class PolicyPrincipal:
    """One principal named by a policy statement."""

    name: str
    kind: str
    # `*`, an account wildcard or NotPrincipal: anyone unless a condition pins the caller.
    anyone: bool


def statement_principals(statement: Mapping[str, Any]) -> list[PolicyPrincipal]:
    """The principals an Allow statement names, normalised to ARNs or `*`."""
    if "NotPrincipal" in statement:
        # Allow with NotPrincipal: everyone except the listed ones.
        return [PolicyPrincipal("*", "public", True)]
    raw = statement.get("Principal")
    if raw is None:
        return []
    if raw == "*":
        return [PolicyPrincipal("*", "public", True)]
    found: list[PolicyPrincipal] = []
    if not isinstance(raw, Mapping):
        return [PolicyPrincipal(str(raw), "other", False)]
    for kind, values in raw.items():
        for value in _as_list(values):
            text = str(value)
            if kind == "AWS":
                if text == "*":
                    found.append(PolicyPrincipal("*", "public", True))
                elif text.isdigit() and len(text) == 12:
                    found.append(PolicyPrincipal(f"arn:aws:iam::{text}:root", "account", False))
                elif text.startswith("arn:"):
                    parts = text.split(":", 5)
                    account = parts[4] if len(parts) > 4 else ""
                    wildcard = "*" in account or "?" in account
                    kind_name = "account" if text.endswith(":root") else "iam"
                    found.append(PolicyPrincipal(text, kind_name, wildcard))
                else:
                    found.append(PolicyPrincipal(text, "iam", "*" in text))
            elif kind == "Service":
                found.append(PolicyPrincipal(text, "service", False))
            elif kind == "CanonicalUser":
                found.append(PolicyPrincipal(f"canonical:{text}", "canonical", False))
            elif kind == "Federated":
                found.append(PolicyPrincipal(text, "federated", text == "*"))
            else:
                found.append(PolicyPrincipal(text, str(kind).lower(), text == "*"))
    return found


def resource_targets(resources: Iterable[str], bucket: str, asset_paths: Iterable[str]
                     ) -> tuple[bool, set[str], list[str]]:
    """Where a statement's Resources land: (whole bucket?, asset paths, unmatched resources).

    `arn:aws:s3:::bucket`, `arn:aws:s3:::bucket/*` and `*` are the whole bucket. A resource
    whose key part pins a prefix lands on every asset that the pattern can reach: the literal
    text before the first wildcard and the asset prefix must be prefixes of one another. That
    errs towards reporting access, never towards hiding it.
    """
    paths = list(asset_paths)
    whole = False
    assets: set[str] = set()
    unmatched: list[str] = []
    for resource in resources:
        text = str(resource)
        if text == "*":
            whole = True
            continue
        head = "arn:aws:s3:::"
        if not text.startswith(head):
            continue
        rest = text[len(head):]
        bucket_part, slash, key_pattern = rest.partition("/")
        if not fnmatch.fnmatchcase(bucket, bucket_part):
            continue
        if not slash or key_pattern in ("*", ""):
            whole = True
            continue
        cut = min((i for i, ch in enumerate(key_pattern) if ch in "*?"), default=len(key_pattern))
        literal = key_pattern[:cut]
        hit = False
        for path in paths:
            prefix = "" if path == ROOT_ASSET else path
            if path == ROOT_ASSET:
                reaches = "/" not in literal
            elif cut == len(key_pattern):
                reaches = literal.startswith(prefix)
            else:
                reaches = literal.startswith(prefix) or prefix.startswith(literal)
            if reaches:
                assets.add(path)
                hit = True
        if not hit:
            unmatched.append(text)
    return whole, assets, unmatched


@dataclass
class _Listing:
    """Running totals for one prefix."""

    object_count: int = 0
    total_bytes: int = 0
    newest: datetime | None = None
    oldest: datetime | None = None
    storage_classes: set[str] = field(default_factory=set)
    capped: bool = False

    def add(self, contents: Iterable[Mapping[str, Any]]) -> None:
        newest, oldest = self.newest, self.oldest
        count, size = 0, 0
        classes = self.storage_classes
        for item in contents:
            count += 1
            size += int(item.get("Size") or 0)
            modified = item.get("LastModified")
            if modified is not None:
                if newest is None or modified > newest:
                    newest = modified
                if oldest is None or modified < oldest:
                    oldest = modified
            classes.add(item.get("StorageClass") or "STANDARD")
        self.object_count += count
        self.total_bytes += size
        self.newest, self.oldest = newest, oldest


@dataclass
class _Facts:
    """Bucket-level settings and whether each could be read: set, not_set or unknown."""

    values: dict[str, Any] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    why_unknown: dict[str, str] = field(default_factory=dict)


class _Run:
    """One probe's shared state: clients, deadline, and a stop switch for its worker threads."""

    def __init__(self, connector: S3Connector, context: ProbeContext) -> None:
        self.connector = connector
        self.context = context
        self.deadline = time.monotonic() + max(1.0, float(context.timeout))
        self.stop = threading.Event()

    def stopped(self) -> bool:
        return self.stop.is_set() or self.context.cancelled.is_set()

    def call(self, operation: str, call: Callable[[], T]) -> T:
        """Run one SDK call, retrying only retryable failures, with bounded backoff."""
        delay = BACKOFF_SECONDS
        attempt = 0
        while True:
            if self.stopped():
                raise ProbeError(f"s3 probe of bucket {self.connector.bucket!r} was cancelled",
                                 retryable=True, reason="timeout")
            try:
                return call()
            except Exception as exc:  # noqa: BLE001 - translated in one place, right here
                error = self.connector.translate_error(exc, operation)
            attempt += 1
            if not error.retryable or attempt >= MAX_ATTEMPTS or time.monotonic() + delay >= self.deadline:
                raise error from None
            if self.context.cancelled.wait(delay):
                raise error from None
            delay *= 2


class S3Connector(Connector):
    """An S3 bucket (or an S3-compatible endpoint): prefixes, freshness, owner tag, ACL and policy."""

    kind = "s3"
    description = "S3 bucket prefixes: object counts, newest object, owner tag, ACL, policy and public-access blocks"
    settings = (
        Setting("bucket", str, required=True, help="bucket name"),
        Setting("prefixes", list, help="prefixes to inventory, each one an asset; default: every first-level prefix"),
        Setting("region", str, help="AWS region of the bucket (default: the AWS chain's)"),
        Setting("endpoint_url", str, help="S3-compatible endpoint, e.g. http://127.0.0.1:9000"),
        Setting("max_objects", int, help="stop listing a prefix after this many objects; the result is marked partial"),
        Setting("workers", int, help="prefixes listed concurrently (default 4)"),
        Setting("account_id", str, help="account whose public-access block to read (default: from STS)"),
        Setting("profile", str, help="AWS profile name (default: the AWS chain's)"),
        Setting("access_key_id", str, secret=True, help="access key id, usually ${ENV_VAR}; default: the AWS chain"),
        Setting("secret_access_key", str, secret=True, help="secret access key, usually ${ENV_VAR}"),
        Setting("session_token", str, secret=True, help="session token for temporary credentials"),
    )

    @property
    def bucket(self) -> str:
        """The bucket this source names."""
        return str(self.setting("bucket", ""))

    # ------------------------------------------------------------------ errors

    def translate_error(self, exc: BaseException, operation: str) -> ProbeError:
        """Turn any boto3/botocore exception into a ProbeError: the one place that knows them."""
        if isinstance(exc, ProbeError):
            return exc
        from botocore import exceptions as bx

        retryable, reason = False, "error"
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError
                      | bx.CredentialRetrievalError | bx.ProfileNotFound):
            reason, detail = "no_credentials", f"no usable AWS credentials ({type(exc).__name__})"
        elif isinstance(exc, bx.ClientError):
            code = error_code(exc)
            message = str(exc.response.get("Error", {}).get("Message") or "")
            detail = f"{code}: {message}" if message else code
            if code in CREDENTIAL_CODES:
                reason, detail = "access_denied", f"{code}: the credentials were rejected"
            elif code in DENIED_CODES:
                reason = "access_denied"
            elif code in NOT_FOUND_CODES:
                reason = "not_found"
                if code in ("404", "NotFound", "NoSuchBucket"):
                    detail = f"{code}: the bucket does not exist"
            elif code in THROTTLE_CODES:
                reason, retryable = "throttled", True
            elif code in TRANSIENT_CODES:
                retryable = True
        elif isinstance(exc, bx.ConnectTimeoutError | bx.ReadTimeoutError):
            reason, retryable, detail = "timeout", True, f"timed out ({type(exc).__name__})"
        elif isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError
                        | bx.ProxyConnectionError | bx.HTTPClientError):
            reason, retryable = "unreachable", True
            detail = f"cannot reach the endpoint ({type(exc).__name__})"
        elif isinstance(exc, bx.NoRegionError):
            detail = "no AWS region configured; set `region`"
        elif isinstance(exc, bx.ParamValidationError):
            detail = f"invalid request: {exc}"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        message = redact_text(f"s3 {operation} on bucket {self.bucket!r}: {detail}", self.redactions())
        return ProbeError(message, retryable=retryable, reason=reason)

    # ------------------------------------------------------------------ clients

    def _config(self, context: ProbeContext, pool: int) -> Any:
        from botocore.config import Config

        timeout = max(1.0, float(context.timeout))
        return Config(
            connect_timeout=min(10.0, max(1.0, timeout / 6)),
            read_timeout=min(60.0, max(2.0, timeout / 3)),
            # Retries live in `_Run.call`, in one place, so botocore must not retry on its own.
            retries={"total_max_attempts": 1},
            max_pool_connections=pool,
            user_agent_extra="ctxscan",
        )

    def _session(self) -> Any:
        import boto3
        import botocore.session

        core = botocore.session.Session()
        core.register_component("data_loader", shared_data_loader())
        return boto3.session.Session(
            botocore_session=core,
            aws_access_key_id=self.setting("access_key_id"),
            aws_secret_access_key=self.setting("secret_access_key"),
            aws_session_token=self.setting("session_token"),
            region_name=self.setting("region"),
            profile_name=self.setting("profile"),
        )

    # ------------------------------------------------------------------ probe

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """List the prefixes and read the bucket's ACL, policy, blocks and tags."""
        run = _Run(self, context)
        workers = max(1, int(self.setting("workers", 4)))
        try:
            session = self._session()
            s3 = session.client("s3", endpoint_url=self.setting("endpoint_url"),
                                config=self._config(context, workers + 4))
        except Exception as exc:  # noqa: BLE001 - translated in one place
            raise self.translate_error(exc, "client setup") from None
        max_objects = self.setting("max_objects")
        cap = int(max_objects) if max_objects is not None else None
        configured = [str(p) for p in _as_list(self.setting("prefixes"))]
        notes: list[str] = []

        listings: dict[str, _Listing] = {}
        if "" in configured:
            notes.append("an empty prefix is not an asset and was ignored; "
                         "leave `prefixes` out to inventory every first-level prefix")
        if configured:
            prefixes = list(dict.fromkeys(p for p in configured if p and self.source.wants(p)))
        else:
            discovered, root = self._discover(run, s3, cap)
            prefixes = [p for p in discovered if self.source.wants(p)]
            if root.object_count and self.source.wants(ROOT_ASSET):
                listings[ROOT_ASSET] = root
        if self.source.freshness.column:
            notes.append("freshness.column is ignored by the s3 connector: "
                         "freshness is the newest object's LastModified")

        facts = _Facts()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctxscan-s3") as pool:
            jobs: dict[Future[_Listing], str] = {
                pool.submit(self._list_prefix, run, s3, prefix, cap): prefix for prefix in prefixes}
            reading: Future[None] = pool.submit(self._read_facts, run, session, s3, facts)
            everything: list[Future[Any]] = [*jobs, reading]
            done, _ = wait(everything, return_when=FIRST_EXCEPTION)
            failure = next((f.exception() for f in done if f.exception() is not None), None)
            if failure is not None:
                run.stop.set()  # the other workers stop at their next request
                raise self.translate_error(failure, "probe") from None
            for job, prefix in jobs.items():
                listings[prefix] = job.result()

        owner = self._owner(facts, notes)
        summary = self._access_summary(facts)
        paths = prefixes + ([ROOT_ASSET] if ROOT_ASSET in listings else [])
        assets = tuple(self._asset(path, listings[path], owner, summary) for path in paths)
        principals, grants, access_notes, reports = self._access(facts, list(paths), context)
        notes.extend(access_notes)
        memberships, state = self._runs_as(context, principals, facts, notes) if reports else ([], {})
        capped = sorted(path for path, listing in listings.items() if listing.capped)
        if capped:
            notes.append(f"listing stopped at max_objects={cap} in {', '.join(capped)}: counts are partial")
        if not assets:
            notes.append(f"bucket {self.bucket!r} has no objects under the configured prefixes"
                         if configured else f"bucket {self.bucket!r} is empty")
        for key, why in sorted(facts.why_unknown.items()):
            notes.append(f"{key.replace('_', ' ')} unknown ({why}); not assumed safe")
        return SourceSnapshot(
            source_id=self.source.id,
            connector=self.source.connector,
            probed_at=context.now if context.now.tzinfo else context.now.replace(tzinfo=UTC),
            assets=assets,
            principals=principals,
            grants=grants,
            memberships=tuple(memberships),
            state=state,
            owner=owner,
            partial=bool(capped),
            notes=tuple(redact_text(n, self.redactions()) for n in notes),
            reports_grants=reports,
        )

    def _discover(self, run: _Run, s3: Any, cap: int | None) -> tuple[list[str], _Listing]:
        """First-level prefixes (Delimiter "/") and the totals of the objects at the root."""
        prefixes: list[str] = []
        root = _Listing()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Delimiter": "/", "MaxKeys": PAGE_SIZE}
            if token:
                kwargs["ContinuationToken"] = token
            page = run.call("ListObjectsV2", functools.partial(s3.list_objects_v2, **kwargs))
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()) if p.get("Prefix"))
            if not root.capped:
                root.add(page.get("Contents", ()))
                if cap is not None and root.object_count >= cap and page.get("IsTruncated"):
                    root.capped = True
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return prefixes, root

    def _list_prefix(self, run: _Run, s3: Any, prefix: str, cap: int | None) -> _Listing:
        """Totals for every object under one prefix, page by page, up to the cap."""
        listing = _Listing()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": PAGE_SIZE}
            if cap is not None:
                kwargs["MaxKeys"] = max(1, min(PAGE_SIZE, cap - listing.object_count))
            if token:
                kwargs["ContinuationToken"] = token
            page = run.call("ListObjectsV2", functools.partial(s3.list_objects_v2, **kwargs))
            listing.add(page.get("Contents", ()))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return listing
            if cap is not None and listing.object_count >= cap:
                listing.capped = True
                return listing

    def _optional(self, run: _Run, key: str, call: Callable[[], Any], facts: _Facts) -> None:
        """Read a bucket setting that may be absent (not set) or unreadable (unknown)."""
        from botocore.exceptions import ClientError

        def attempt() -> tuple[str, Any]:
            try:
                return "set", call()
            except ClientError as exc:
                code = error_code(exc)
                if code in NOT_SET_CODES.get(key, ()):
                    return "not_set", None
                if code in UNKNOWN_CODES:
                    return "unknown", code
                raise

        status, value = run.call(key, attempt)
        facts.status[key] = status
        if status == "set":
            facts.values[key] = value
        elif status == "unknown":
            facts.why_unknown[key] = str(value)

    def _read_facts(self, run: _Run, session: Any, s3: Any, facts: _Facts) -> None:
        """ACL, policy, policy status, public-access blocks, ownership controls and tags."""
        bucket = self.bucket
        reads: list[tuple[str, Callable[[], Any]]] = [
            ("acl", lambda: s3.get_bucket_acl(Bucket=bucket)),
            ("policy", lambda: s3.get_bucket_policy(Bucket=bucket)),
            ("policy_status", lambda: s3.get_bucket_policy_status(Bucket=bucket)),
            ("public_access_block", lambda: s3.get_public_access_block(Bucket=bucket)),
            ("ownership_controls", lambda: s3.get_bucket_ownership_controls(Bucket=bucket)),
        ]
        if self.source.owner_tag:
            reads.append(("tags", lambda: s3.get_bucket_tagging(Bucket=bucket)))
        for key, call in reads:
            self._optional(run, key, call, facts)
        self._read_account_block(run, session, facts)

    def _read_account_block(self, run: _Run, session: Any, facts: _Facts) -> None:
        """The account-level public-access block, when the account id can be learnt."""
        key = "account_public_access_block"
        endpoint = self.setting("endpoint_url")
        config = self._config(run.context, 2)
        try:
            account = self.setting("account_id")
            if not account:
                sts = session.client("sts", endpoint_url=endpoint, config=config)
                account = run.call("GetCallerIdentity", lambda: sts.get_caller_identity()).get("Account")
            if account:
                facts.values["account_id"] = str(account)
            control = session.client("s3control", endpoint_url=endpoint, config=config)
            if endpoint:
                # s3control puts the account id into the host name; a custom endpoint has no
                # such host, so the request goes to the endpoint itself.
                with_account = f"//{account}."

                def strip_account(request: Any, **_: Any) -> None:
                    request.url = request.url.replace(with_account, "//", 1)

                control.meta.events.register("before-send.s3-control.*", strip_account)
            self._optional(run, key, lambda: control.get_public_access_block(AccountId=str(account)), facts)
        except ProbeError as exc:
            if run.stopped():
                raise
            # The account block refines the bucket's; failing to read it makes it unknown.
            facts.status[key] = "unknown"
            facts.why_unknown[key] = exc.reason

    # ------------------------------------------------------------------ results

    def _runs_as(self, context: ProbeContext, principals: Iterable[Principal], facts: _Facts,
                 notes: list[str]) -> tuple[list[Membership], dict[str, Any]]:
        """Resolve `runs_as` names: a full ARN as written, a role name to
        `arn:aws:iam::ACCOUNT:role/NAME` with `account_id` (set, or learnt from STS). A name
        no bucket-side grant names is unknown: identity-based IAM policies are not visible
        here, so its access cannot be checked."""
        known = {p.name for p in principals}
        account = self.setting("account_id") or facts.values.get("account_id")
        resolved: dict[str, str] = {}
        unknown: list[str] = []
        for wanted in sorted(context.principals):
            if wanted in PUBLIC_PRINCIPALS:
                continue
            arn = s3_principal(wanted, str(account) if account else None)
            if arn is None:
                unknown.append(wanted)
                notes.append(f"runs_as principal {wanted!r} is a role name, but the account is unknown: set "
                             "account_id or write the full ARN")
            elif arn not in known:
                unknown.append(wanted)
                spelled = f" (read as {arn})" if arn != wanted else ""
                notes.append(f"runs_as principal {wanted!r}{spelled}: no bucket ACL or policy statement names it, "
                             "and identity-based IAM policies are not visible to the s3 connector: its access "
                             "cannot be checked")
            elif arn != wanted:
                resolved[wanted] = arn
        return alias_memberships(resolved), {"unknown_principals": unknown, "resolved_principals": resolved}

    def _owner(self, facts: _Facts, notes: list[str]) -> DiscoveredOwner | None:
        tag = self.source.owner_tag
        if not tag:
            return None
        status = facts.status.get("tags")
        if status == "not_set":
            notes.append(f"bucket has no tags, so no owner from tag {tag!r}")
        if status != "set":
            return None
        for item in facts.values["tags"].get("TagSet", ()):
            if item.get("Key") == tag and item.get("Value"):
                return DiscoveredOwner(str(item["Value"]), f"tag:{tag}")
        notes.append(f"bucket has no tag {tag!r}, so no discovered owner")
        return None

    def _blocks(self, facts: _Facts) -> dict[str, str]:
        """Which public-access switches are on, and where: {switch: "bucket" | "account"}."""
        on: dict[str, str] = {}
        for key, where in (("account_public_access_block", "account"), ("public_access_block", "bucket")):
            if facts.status.get(key) != "set":
                continue
            config = facts.values[key].get("PublicAccessBlockConfiguration", {})
            for switch in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"):
                if config.get(switch):
                    on[switch] = where
        return on

    def _ownership(self, facts: _Facts) -> str | None:
        if facts.status.get("ownership_controls") != "set":
            return None
        for rule in facts.values["ownership_controls"].get("OwnershipControls", {}).get("Rules", ()):
            if rule.get("ObjectOwnership"):
                return str(rule["ObjectOwnership"])
        return None

    def _access_summary(self, facts: _Facts) -> dict[str, Any]:
        """JSON-ready bucket exposure facts, shown with each asset."""
        summary: dict[str, Any] = {"bucket": self.bucket}
        for key in ("acl", "policy", "policy_status", "public_access_block",
                    "account_public_access_block", "ownership_controls", "tags"):
            if key in facts.status:
                summary[key] = facts.status[key]
        summary["public_access_block_switches"] = dict(sorted(self._blocks(facts).items()))
        ownership = self._ownership(facts)
        if ownership:
            summary["object_ownership"] = ownership
        if facts.status.get("policy_status") == "set":
            status = facts.values["policy_status"].get("PolicyStatus", {})
            summary["policy_is_public"] = bool(status.get("IsPublic"))
        summary["unknown"] = sorted(facts.why_unknown)
        return summary

    def _asset(self, path: str, listing: _Listing, owner: DiscoveredOwner | None,
               summary: Mapping[str, Any]) -> Asset:
        if listing.newest is not None:
            caveat = "deleting objects does not move the newest LastModified"
            if listing.capped:
                caveat = "listing stopped at max_objects: a newer object may exist beyond the cap"
            freshness = FreshnessObservation(method=METHOD_METADATA, last_changed=_utc(listing.newest),
                                             caveat=caveat, detail="newest object LastModified")
        else:
            freshness = FreshnessObservation(method=METHOD_NONE, detail="no objects under this prefix")
        properties: dict[str, Any] = {
            "prefix": "" if path == ROOT_ASSET else path,
            "object_count": listing.object_count,
            "total_bytes": listing.total_bytes,
            "newest_last_modified": _utc(listing.newest).isoformat() if listing.newest else None,
            "oldest_last_modified": _utc(listing.oldest).isoformat() if listing.oldest else None,
            "storage_classes": sorted(listing.storage_classes),
            "partial": listing.capped,
            "access": dict(summary),
        }
        if path == ROOT_ASSET:
            properties["root"] = True
        return Asset(path=path, kind="prefix", container=None, size_bytes=listing.total_bytes,
                     freshness=freshness, owner=owner, properties=properties)

    def _access(self, facts: _Facts, asset_paths: list[str], context: ProbeContext
                ) -> tuple[tuple[Principal, ...], tuple[Grant, ...], list[str], bool]:
        """Principals and grants from the ACL and the policy, less what the blocks neutralise."""
        notes: list[str] = []
        grants: list[Grant] = []
        principals: dict[str, Principal] = {}
        blocks = self._blocks(facts)

        def add_principal(name: str, kind: str, admin: Iterable[str] = (), **properties: Any) -> None:
            current = principals.get(name)
            attributes = set(current.attributes) if current else set()
            attributes.update(admin)
            merged = dict(current.properties) if current else {}
            merged.update({k: v for k, v in properties.items() if v is not None})
            principals[name] = Principal(name=name, kind=current.kind if current else kind,
                                         attributes=tuple(sorted(attributes)),
                                         privileged=bool(attributes), properties=merged)

        if facts.status.get("acl") == "set":
            acls_disabled = self._ownership(facts) == "BucketOwnerEnforced"
            for entry in facts.values["acl"].get("Grants", ()):
                grantee = entry.get("Grantee", {})
                permission = str(entry.get("Permission", ""))
                access = ACL_ACCESS.get(permission, ACCESS_OTHER)
                uri = grantee.get("URI")
                public = uri in (ALL_USERS_URI, AUTHENTICATED_USERS_URI)
                if uri == ALL_USERS_URI:
                    name, kind = "allUsers", "public"
                elif uri == AUTHENTICATED_USERS_URI:
                    name, kind = "allAuthenticatedUsers", "public"
                elif uri:
                    name, kind = str(uri).rsplit("/", 1)[-1], "group"
                elif grantee.get("ID"):
                    name, kind = f"canonical:{grantee['ID']}", "canonical"
                elif grantee.get("EmailAddress"):
                    name, kind = f"email:{grantee['EmailAddress']}", "email"
                else:
                    continue
                if acls_disabled:
                    if public:
                        notes.append(f"bucket ACL grants {permission} to {name}, but ACLs are disabled "
                                     "(ObjectOwnership BucketOwnerEnforced): not public")
                    continue
                if public and "IgnorePublicAcls" in blocks:
                    notes.append(f"bucket ACL grants {permission} to {name}, neutralised by IgnorePublicAcls "
                                 f"in the {blocks['IgnorePublicAcls']} public-access block: not public")
                    continue
                admin = (f"acl:{permission}",) if access == ACCESS_ADMIN else ()
                add_principal(name, kind, admin, display_name=grantee.get("DisplayName"))
                grants.append(Grant(principal=name, privilege=permission, target="*", scope=SCOPE_SOURCE,
                                    access=access, public=public, via="bucket ACL"))

        policy_public = False
        if facts.status.get("policy") == "set":
            try:
                document = json.loads(facts.values["policy"].get("Policy") or "{}")
            except ValueError:
                document = None
                notes.append("bucket policy is not valid JSON; its grants are unknown")
            statements = _as_list(document.get("Statement")) if isinstance(document, Mapping) else []
            denies = 0
            for index, statement in enumerate(statements):
                if not isinstance(statement, Mapping):
                    continue
                if statement.get("Effect") != "Allow":
                    denies += 1
                    continue
                sid = statement.get("Sid") or f"#{index}"
                pinned = pinning_condition(statement.get("Condition"))
                if "NotAction" in statement:
                    actions, extra = ["*"], " (NotAction: all but the listed actions)"
                else:
                    actions, extra = [str(a) for a in _as_list(statement.get("Action"))], ""
                targets: set[str] = set()
                unmatched: list[str] = []
                if "NotResource" in statement:
                    whole = True
                else:
                    whole, targets, unmatched = resource_targets(
                        [str(r) for r in _as_list(statement.get("Resource"))], self.bucket, asset_paths)
                for resource in unmatched:
                    notes.append(f"bucket policy statement {sid} grants on {resource}, which matches no probed asset")
                via = f"bucket policy statement {sid}" + (" with a condition" if statement.get("Condition") else "") + extra
                levels = [(action, classify_action(action)) for action in actions]
                for who in statement_principals(statement):
                    public = who.anyone and not pinned
                    if who.anyone and pinned:
                        # Not "*": anyone who meets the condition, which a reader must see.
                        who = PolicyPrincipal(f"{who.name}[{pinned}]", "conditional", False)
                    if public and "RestrictPublicBuckets" in blocks:
                        notes.append(f"bucket policy statement {sid} is public, neutralised by RestrictPublicBuckets "
                                     f"in the {blocks['RestrictPublicBuckets']} public-access block: not public")
                        continue
                    policy_public = policy_public or public
                    add_principal(who.name, who.kind, [a for a, level in levels if level == ACCESS_ADMIN])
                    for action, level in levels:
                        if whole:
                            grants.append(Grant(principal=who.name, privilege=action, target="*",
                                                scope=SCOPE_SOURCE, access=level, public=public, via=via))
                            continue
                        for target in sorted(targets):
                            grants.append(Grant(principal=who.name, privilege=action, target=target,
                                                scope=SCOPE_ASSET, access=level, public=public, via=via))
            if denies:
                notes.append(f"bucket policy has {denies} Deny statement(s); the grants do not subtract them")
        if facts.status.get("policy_status") == "set":
            is_public = bool(facts.values["policy_status"].get("PolicyStatus", {}).get("IsPublic"))
            if is_public and not policy_public and "RestrictPublicBuckets" not in blocks:
                # AWS's own evaluation says public where ours did not: the stricter view wins.
                add_principal("*", "public")
                grants.append(Grant(principal="*", privilege="s3:GetObject", target="*", scope=SCOPE_SOURCE,
                                    access=ACCESS_READ, public=True, via="bucket policy status IsPublic"))
                notes.append("GetBucketPolicyStatus reports the policy public although no statement looked public")

        reports = facts.status.get("acl") != "unknown" or facts.status.get("policy") != "unknown"
        return (tuple(principals[name] for name in sorted(principals)), tuple(dict.fromkeys(grants)),
                notes, reports)
