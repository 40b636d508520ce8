"""The s3 connector against moto's server mode on 127.0.0.1 (a real S3 HTTP API).

Faults that moto cannot produce (AccessDenied on one sub-resource, throttling) come from
`FaultProxy`, a loopback server in front of moto that forwards everything else unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from connectors.s3 import (
    ROOT_ASSET,
    S3Connector,
    classify_action,
    pinning_condition,
    resource_targets,
    statement_principals,
)
from scanner.errors import ProbeError
from scanner.model import SourceSnapshot
from scanner.plugins import FreshnessConfig, ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract

if TYPE_CHECKING:
    from tests.connectors.cloudservers import FaultProxies, MotoServer, Reply

pytest_plugins = ("tests.connectors.cloudservers",)
AWS_ACCOUNT = "123456789012"  # moto's default account

ROLE = f"arn:aws:iam::{AWS_ACCOUNT}:role/support-bot"
ADMIN_ROLE = f"arn:aws:iam::{AWS_ACCOUNT}:role/kb-admin"


def source(bucket: str, endpoint: str, owner_tag: str | None = None, include: tuple[str, ...] = (),
           exclude: tuple[str, ...] = (), column: str | None = None, **settings: Any) -> SourceConfig:
    return SourceConfig(id="kb", connector="s3",
                        settings={"bucket": bucket, "endpoint_url": endpoint, "region": "us-east-1", **settings},
                        owner_tag=owner_tag, include=include, exclude=exclude,
                        freshness=FreshnessConfig(column=column))


def probe(config: SourceConfig, principals: frozenset[str] = frozenset(), timeout: float = 30.0) -> SourceSnapshot:
    return S3Connector(config).probe(ProbeContext(now=datetime.now(UTC), principals=principals, timeout=timeout))


def public_grants(snapshot: SourceSnapshot) -> list[Any]:
    return [g for g in snapshot.grants if g.public]


def put_policy(moto: MotoServer, bucket: str, *statements: dict[str, Any]) -> None:
    moto.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": list(statements)}))


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    """A fresh bucket with two prefixes of a few objects each."""
    name = moto_server.create_bucket()
    moto_server.put_objects(name, ["articles/a.md", "articles/b.md", "macros/m.txt"])
    return name


@pytest.fixture
def account_block(moto_server: MotoServer) -> Iterator[Any]:
    """The account-level public-access block, removed again after the test."""
    control = moto_server.control()
    try:
        yield control
    finally:
        try:
            control.delete_public_access_block(AccountId=AWS_ACCOUNT)
        except Exception:  # noqa: BLE001 - it may never have been set
            pass


# ---------------------------------------------------------------------------------------
# assets and freshness


def test_importing_the_connector_does_not_import_boto3() -> None:
    code = "import sys, connectors.s3; print('boto3' in sys.modules or 'botocore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_configured_prefixes_are_the_assets(moto_server: MotoServer, bucket: str) -> None:
    moto_server.put_objects(bucket, ["other/x"])
    snapshot = probe(source(bucket, moto_server.endpoint, prefixes=["articles/", "macros/", "missing/"]))
    check_snapshot_contract(snapshot, source(bucket, moto_server.endpoint, prefixes=["articles/", "macros/", "missing/"]))
    assert [a.path for a in snapshot.assets] == ["articles/", "macros/", "missing/"]
    articles = snapshot.asset("articles/")
    assert articles is not None
    assert articles.kind == "prefix" and articles.container is None
    assert articles.properties["object_count"] == 2
    assert articles.size_bytes == articles.properties["total_bytes"] == 2
    assert articles.freshness.method == "metadata"
    assert articles.freshness.last_changed is not None and articles.freshness.last_changed.tzinfo is not None
    assert articles.properties["storage_classes"] == ["STANDARD"]
    assert articles.properties["partial"] is False
    missing = snapshot.asset("missing/")
    assert missing is not None and missing.properties["object_count"] == 0
    assert missing.freshness.method == "none"
    assert not snapshot.partial


def test_default_assets_are_first_level_prefixes_and_the_root(moto_server: MotoServer, bucket: str) -> None:
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key="README.txt", Body=b"hello", StorageClass="STANDARD_IA")
    config = source(bucket, moto_server.endpoint)
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    assert [a.path for a in snapshot.assets] == ["articles/", "macros/", ROOT_ASSET]
    root = snapshot.asset(ROOT_ASSET)
    assert root is not None
    assert root.properties["object_count"] == 1 and root.properties["root"] is True
    assert root.properties["storage_classes"] == ["STANDARD_IA"]
    newest = datetime.fromisoformat(root.properties["newest_last_modified"])
    assert root.freshness.last_changed == newest


def test_include_and_exclude_filter_the_prefixes(moto_server: MotoServer, bucket: str) -> None:
    config = source(bucket, moto_server.endpoint, include=("articles/*", "macros/*"), exclude=("macros/*",))
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    assert [a.path for a in snapshot.assets] == ["articles/"]


def test_three_thousand_objects_across_prefixes(moto_server: MotoServer) -> None:
    name = moto_server.create_bucket("bulk")
    keys = [f"{prefix}/{i:05d}.json" for prefix in ("alpha", "beta", "gamma") for i in range(1000)]
    moto_server.put_objects(name, keys, body=b"{}")
    config = source(name, moto_server.endpoint, workers=3)
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    counts = {a.path: a.properties["object_count"] for a in snapshot.assets}
    assert counts == {"alpha/": 1000, "beta/": 1000, "gamma/": 1000}
    assert sum(a.size_bytes or 0 for a in snapshot.assets) == 6000
    assert not snapshot.partial

    # The object cap stops each prefix early, and the result says so instead of pretending.
    capped_config = source(name, moto_server.endpoint, max_objects=250)
    capped = probe(capped_config)
    check_snapshot_contract(capped, capped_config)
    assert capped.partial
    assert {a.properties["object_count"] for a in capped.assets} == {250}
    assert all(a.properties["partial"] for a in capped.assets)
    assert any("max_objects=250" in note for note in capped.notes)
    assert all("newer object may exist" in (a.freshness.caveat or "") for a in capped.assets)


def test_keys_with_newlines_and_unicode(moto_server: MotoServer) -> None:
    name = moto_server.create_bucket("odd-keys")
    moto_server.post_object(name, "kb/line one\nline two.md")
    moto_server.post_object(name, "new\nline/readme\r\n.txt")
    moto_server.put_objects(name, ["kb/café ü漢字.md", "ünïcödé/ß.txt", "kb/sub dir/%41.txt"])
    config = source(name, moto_server.endpoint)
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    paths = sorted(a.path for a in snapshot.assets)
    assert paths == sorted(["kb/", "new\nline/", "ünïcödé/"])
    kb = snapshot.asset("kb/")
    assert kb is not None and kb.properties["object_count"] == 3
    configured = source(name, moto_server.endpoint, prefixes=["new\nline/", "ünïcödé/"])
    assert [a.properties["object_count"] for a in probe(configured).assets] == [1, 1]


def test_an_empty_bucket_has_no_assets_and_says_so(moto_server: MotoServer) -> None:
    name = moto_server.create_bucket("empty")
    config = source(name, moto_server.endpoint)
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    assert snapshot.assets == ()
    assert any("is empty" in note for note in snapshot.notes)


def test_a_missing_bucket_is_not_found(moto_server: MotoServer) -> None:
    with pytest.raises(ProbeError) as caught:
        probe(source("ctxscan-no-such-bucket-4f1e", moto_server.endpoint))
    assert caught.value.reason == "not_found"
    assert not caught.value.retryable
    assert "ctxscan-no-such-bucket-4f1e" in caught.value.message


def test_freshness_column_is_ignored_with_a_note(moto_server: MotoServer, bucket: str) -> None:
    snapshot = probe(source(bucket, moto_server.endpoint, column="updated_at"))
    assert any("freshness.column is ignored" in note for note in snapshot.notes)


# ---------------------------------------------------------------------------------------
# owner


def test_owner_from_a_bucket_tag(moto_server: MotoServer, bucket: str) -> None:
    moto_server.client().put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [
        {"Key": "owner", "Value": "kb-team"}, {"Key": "cost-center", "Value": "42"}]})
    snapshot = probe(source(bucket, moto_server.endpoint, owner_tag="owner"))
    assert snapshot.owner is not None
    assert (snapshot.owner.owner, snapshot.owner.provenance) == ("kb-team", "tag:owner")
    assert all(a.owner == snapshot.owner for a in snapshot.assets)

    other_tag = probe(source(bucket, moto_server.endpoint, owner_tag="team"))
    assert other_tag.owner is None
    assert any("no tag 'team'" in note for note in other_tag.notes)


def test_untagged_bucket_has_no_owner(moto_server: MotoServer, bucket: str) -> None:
    snapshot = probe(source(bucket, moto_server.endpoint, owner_tag="owner"))
    assert snapshot.owner is None
    assert snapshot.assets[0].properties["access"]["tags"] == "not_set"


# ---------------------------------------------------------------------------------------
# exposure and access


def test_not_set_settings_are_not_set(moto_server: MotoServer, bucket: str) -> None:
    snapshot = probe(source(bucket, moto_server.endpoint))
    access = snapshot.assets[0].properties["access"]
    for key in ("policy", "policy_status", "public_access_block", "ownership_controls",
                "account_public_access_block"):
        assert access[key] == "not_set", key
    assert access["acl"] == "set" and access["unknown"] == []
    assert public_grants(snapshot) == []
    assert snapshot.reports_grants
    owner_grants = [g for g in snapshot.grants if g.via == "bucket ACL"]
    assert [g.privilege for g in owner_grants] == ["FULL_CONTROL"]
    assert owner_grants[0].principal.startswith("canonical:") and owner_grants[0].access == "admin"


def test_public_read_acl(moto_server: MotoServer, bucket: str) -> None:
    moto_server.client().put_bucket_acl(Bucket=bucket, ACL="public-read")
    config = source(bucket, moto_server.endpoint)
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    [grant] = public_grants(snapshot)
    assert (grant.principal, grant.privilege, grant.access) == ("allUsers", "READ", "read")
    assert (grant.scope, grant.target, grant.via) == ("source", "*", "bucket ACL")


def test_public_read_write_acl_and_authenticated_users(moto_server: MotoServer, bucket: str) -> None:
    client = moto_server.client()
    owner = client.get_bucket_acl(Bucket=bucket)["Owner"]
    everyone = {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}
    client.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": everyone, "Permission": "READ"}, {"Grantee": everyone, "Permission": "WRITE"}]})
    snapshot = probe(source(bucket, moto_server.endpoint))
    assert {(g.principal, g.privilege, g.access) for g in public_grants(snapshot)} == {
        ("allUsers", "READ", "read"), ("allUsers", "WRITE", "write")}
    moto_server.client().put_bucket_acl(Bucket=bucket, ACL="authenticated-read")
    snapshot = probe(source(bucket, moto_server.endpoint))
    assert {(g.principal, g.access) for g in public_grants(snapshot)} == {("allAuthenticatedUsers", "read")}


def test_an_access_block_neutralises_a_public_acl(moto_server: MotoServer, bucket: str) -> None:
    client = moto_server.client()
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False})
    snapshot = probe(source(bucket, moto_server.endpoint))
    assert public_grants(snapshot) == []
    assert not any(g.principal == "allUsers" for g in snapshot.grants)
    assert any("neutralised by IgnorePublicAcls in the bucket public-access block" in n for n in snapshot.notes)
    switches = snapshot.assets[0].properties["access"]["public_access_block_switches"]
    assert switches == {"BlockPublicAcls": "bucket", "IgnorePublicAcls": "bucket"}


def test_block_public_acls_alone_does_not_neutralise_an_existing_acl(moto_server: MotoServer, bucket: str) -> None:
    client = moto_server.client()
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False})
    assert [g.principal for g in public_grants(probe(source(bucket, moto_server.endpoint)))] == ["allUsers"]


def test_bucket_owner_enforced_disables_acls(moto_server: MotoServer, bucket: str) -> None:
    client = moto_server.client()
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    client.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    snapshot = probe(source(bucket, moto_server.endpoint))
    assert public_grants(snapshot) == []
    assert snapshot.assets[0].properties["access"]["object_ownership"] == "BucketOwnerEnforced"
    assert any("ACLs are disabled" in note for note in snapshot.notes)


def test_the_account_block_neutralises_too(moto_server: MotoServer, bucket: str, account_block: Any) -> None:
    moto_server.client().put_bucket_acl(Bucket=bucket, ACL="public-read")
    account_block.put_public_access_block(AccountId=AWS_ACCOUNT, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})
    snapshot = probe(source(bucket, moto_server.endpoint))
    assert public_grants(snapshot) == []
    assert snapshot.assets[0].properties["access"]["account_public_access_block"] == "set"
    assert any("in the account public-access block" in note for note in snapshot.notes)


def test_a_public_policy(moto_server: MotoServer, bucket: str) -> None:
    put_policy(moto_server, bucket, {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                                     "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"})
    config = source(bucket, moto_server.endpoint)
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    [grant] = public_grants(snapshot)
    assert (grant.principal, grant.privilege, grant.access, grant.scope) == ("*", "s3:GetObject", "read", "source")
    assert grant.via == "bucket policy statement PublicRead"
    assert snapshot.assets[0].properties["access"]["policy_is_public"] is True


def test_an_account_wildcard_principal_is_public(moto_server: MotoServer, bucket: str) -> None:
    put_policy(moto_server, bucket, {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::*:root"},
                                     "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}"})
    [grant] = public_grants(probe(source(bucket, moto_server.endpoint)))
    assert grant.principal == "arn:aws:iam::*:root" and grant.access == "read"


def test_a_policy_pinned_by_a_condition_is_not_public(moto_server: MotoServer, bucket: str) -> None:
    put_policy(moto_server, bucket, {
        "Sid": "OrgOnly", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": AWS_ACCOUNT}}})
    snapshot = probe(source(bucket, moto_server.endpoint))
    assert public_grants(snapshot) == []
    [grant] = [g for g in snapshot.grants if g.via.startswith("bucket policy")]
    # Named after its condition, never the bare "*" that every reader takes for "anyone".
    assert grant.principal == f"*[aws:PrincipalAccount={AWS_ACCOUNT}]"
    assert grant.via == "bucket policy statement OrgOnly with a condition"
    assert snapshot.assets[0].properties["access"]["policy_is_public"] is False


def test_restrict_public_buckets_neutralises_a_public_policy(moto_server: MotoServer, bucket: str) -> None:
    put_policy(moto_server, bucket, {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                                     "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"})
    moto_server.client().put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": True})
    snapshot = probe(source(bucket, moto_server.endpoint))
    assert public_grants(snapshot) == []
    assert not any(g.principal == "*" for g in snapshot.grants)
    assert any("neutralised by RestrictPublicBuckets" in note for note in snapshot.notes)


def test_write_actions_for_a_workflows_role(moto_server: MotoServer, bucket: str) -> None:
    put_policy(
        moto_server, bucket,
        {"Sid": "BotReadsArticles", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{bucket}/articles/*"},
        {"Sid": "BotLists", "Effect": "Allow", "Principal": {"AWS": [ROLE]},
         "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": ADMIN_ROLE}, "Action": "s3:*",
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]},
        {"Sid": "NoDelete", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket",
         "Resource": f"arn:aws:s3:::{bucket}"},
    )
    config = source(bucket, moto_server.endpoint)
    snapshot = probe(config, principals=frozenset({ROLE}))
    check_snapshot_contract(snapshot, config)
    bot = {(g.privilege, g.access, g.scope, g.target) for g in snapshot.grants if g.principal == ROLE}
    assert bot == {
        ("s3:GetObject", "read", "asset", "articles/"),
        ("s3:PutObject", "write", "asset", "articles/"),
        ("s3:DeleteObject", "write", "asset", "articles/"),
        ("s3:ListBucket", "read", "source", "*"),
    }
    principals = {p.name: p for p in snapshot.principals}
    assert principals[ROLE].kind == "iam" and not principals[ROLE].privileged
    assert principals[ADMIN_ROLE].privileged and "s3:*" in principals[ADMIN_ROLE].attributes
    assert {g.access for g in snapshot.grants if g.principal == ADMIN_ROLE} == {"admin"}
    assert any("1 Deny statement" in note for note in snapshot.notes)
    assert public_grants(snapshot) == []


def test_identity_policies_are_called_out_for_unseen_principals(moto_server: MotoServer, bucket: str) -> None:
    snapshot = probe(source(bucket, moto_server.endpoint), principals=frozenset({ROLE}))
    assert any("identity-based IAM policies are not visible" in n and ROLE in n for n in snapshot.notes)
    # its access cannot be checked: an unknown_principal finding, not a silent "no access"
    assert snapshot.state["unknown_principals"] == [ROLE]


def test_a_role_name_resolves_to_its_arn_with_the_account_id(moto_server: MotoServer, bucket: str) -> None:
    from scanner.access import access_paths, can_read, can_write

    put_policy(moto_server, bucket, {"Sid": "BotWrites", "Effect": "Allow", "Principal": {"AWS": ROLE},
                                     "Action": ["s3:GetObject", "s3:PutObject"],
                                     "Resource": f"arn:aws:s3:::{bucket}/articles/*"})
    config = source(bucket, moto_server.endpoint, account_id=AWS_ACCOUNT)
    snapshot = probe(config, principals=frozenset({"support-bot", "role/support-bot", ROLE, "supprt-bot"}))
    check_snapshot_contract(snapshot, config)
    assert snapshot.state["resolved_principals"] == {"support-bot": ROLE, "role/support-bot": ROLE}
    assert snapshot.state["unknown_principals"] == ["supprt-bot"]
    assert any(f"arn:aws:iam::{AWS_ACCOUNT}:role/supprt-bot" in note for note in snapshot.notes)
    articles = snapshot.asset("articles/")
    assert articles is not None
    for name in ("support-bot", "role/support-bot", ROLE):
        paths = access_paths(snapshot, name, articles)
        assert can_read(paths) and can_write(paths), name


# ---------------------------------------------------------------------------------------
# unknown is never safe, retries, errors


def test_access_denied_on_settings_is_unknown_never_safe(moto_server: MotoServer, bucket: str,
                                                         fault_proxy: FaultProxies) -> None:
    """A FaultProxy answers GetPublicAccessBlock and GetBucketPolicy with S3's AccessDenied."""
    client = moto_server.client()
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})

    def deny(method: str, path: str, body: bytes) -> Reply | None:
        if method == "GET" and ("publicAccessBlock" in path or path.endswith("?policy")):
            return fault_proxy.s3_error(403, "AccessDenied", "Access Denied")
        return None

    proxy = fault_proxy(moto_server.endpoint, [deny])
    snapshot = probe(source(bucket, proxy.endpoint, account_id=AWS_ACCOUNT))
    access = snapshot.assets[0].properties["access"]
    assert access["public_access_block"] == "unknown" and access["policy"] == "unknown"
    assert set(access["unknown"]) >= {"public_access_block", "policy"}
    # The real block would neutralise the ACL, but we could not read it: it stays public.
    assert [g.principal for g in public_grants(snapshot)] == ["allUsers"]
    assert any("public access block unknown (AccessDenied); not assumed safe" in n for n in snapshot.notes)
    assert snapshot.reports_grants  # the ACL was readable


def test_nothing_readable_means_grants_unknown(moto_server: MotoServer, bucket: str,
                                               fault_proxy: FaultProxies) -> None:
    """A FaultProxy answers every bucket sub-resource read with AccessDenied; listing works."""
    def deny(method: str, path: str, body: bytes) -> Reply | None:
        if method == "GET" and "?" in path and "list-type" not in path:
            return fault_proxy.s3_error(403, "AccessDenied", "Access Denied")
        return None

    proxy = fault_proxy(moto_server.endpoint, [deny])
    snapshot = probe(source(bucket, proxy.endpoint, account_id=AWS_ACCOUNT))
    assert not snapshot.reports_grants
    assert snapshot.grants == ()
    assert [a.path for a in snapshot.assets] == ["articles/", "macros/"]


def test_throttling_is_retried(moto_server: MotoServer, bucket: str, fault_proxy: FaultProxies) -> None:
    """A FaultProxy answers the first listing with 503 SlowDown, as S3 does under load."""
    def slow_down(method: str, path: str, body: bytes) -> Reply | None:
        if "list-type=2" in path:
            return fault_proxy.s3_error(503, "SlowDown", "Please reduce your request rate.")
        return None

    proxy = fault_proxy(moto_server.endpoint, [fault_proxy.once(slow_down)])
    snapshot = probe(source(bucket, proxy.endpoint, prefixes=["articles/"]))
    assert proxy.count("list-type=2") == 2
    assert snapshot.asset("articles/") is not None


def test_persistent_throttling_fails_as_retryable(moto_server: MotoServer, bucket: str,
                                                  fault_proxy: FaultProxies) -> None:
    """A FaultProxy answers every listing with 503 SlowDown."""
    def slow_down(method: str, path: str, body: bytes) -> Reply | None:
        if "list-type=2" in path:
            return fault_proxy.s3_error(503, "SlowDown", "Please reduce your request rate.")
        return None

    proxy = fault_proxy(moto_server.endpoint, [slow_down])
    with pytest.raises(ProbeError) as caught:
        probe(source(bucket, proxy.endpoint, prefixes=["articles/"]))
    assert caught.value.reason == "throttled" and caught.value.retryable
    assert proxy.count("list-type=2") == 4  # bounded


def test_access_denied_on_listing_is_not_retried(moto_server: MotoServer, bucket: str,
                                                 fault_proxy: FaultProxies) -> None:
    """A FaultProxy answers listings with AccessDenied."""
    def deny(method: str, path: str, body: bytes) -> Reply | None:
        return fault_proxy.s3_error(403, "AccessDenied", "Access Denied") if "list-type=2" in path else None

    proxy = fault_proxy(moto_server.endpoint, [deny])
    with pytest.raises(ProbeError) as caught:
        probe(source(bucket, proxy.endpoint, prefixes=["articles/"]))
    assert caught.value.reason == "access_denied" and not caught.value.retryable
    assert proxy.count("list-type=2") == 1


def test_a_server_that_is_down_is_unreachable(aws_test_env: dict[str, str], dead_endpoint: str) -> None:
    with pytest.raises(ProbeError) as caught:
        probe(source("some-bucket", dead_endpoint), timeout=5)
    assert caught.value.reason == "unreachable" and caught.value.retryable


def test_a_cancelled_probe_stops(moto_server: MotoServer, bucket: str) -> None:
    context = ProbeContext(now=datetime.now(UTC), timeout=30)
    context.cancelled.set()
    with pytest.raises(ProbeError) as caught:
        S3Connector(source(bucket, moto_server.endpoint)).probe(context)
    assert caught.value.reason == "timeout" and "cancelled" in caught.value.message


def test_an_empty_prefix_is_ignored(moto_server: MotoServer, bucket: str) -> None:
    config = source(bucket, moto_server.endpoint, prefixes=["", "articles/"])
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    assert [a.path for a in snapshot.assets] == ["articles/"]
    assert any("empty prefix" in note for note in snapshot.notes)


def test_no_credentials(moto_server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ProbeError) as caught:
        probe(source(bucket, moto_server.endpoint))
    assert caught.value.reason == "no_credentials"


def test_secrets_never_reach_errors_or_snapshots(moto_server: MotoServer, bucket: str,
                                                fault_proxy: FaultProxies) -> None:
    """A FaultProxy echoes the secret key in an S3 error message, as a hostile endpoint could."""
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    config = source(bucket, moto_server.endpoint, access_key_id="AKIAEXAMPLEKEYID0001",
                    secret_access_key=secret)
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config, secrets=(secret, "AKIAEXAMPLEKEYID0001"))

    def leak(method: str, path: str, body: bytes) -> Reply | None:
        return fault_proxy.s3_error(400, "InvalidArgument", f"bad key {secret} for AKIAEXAMPLEKEYID0001")

    proxy = fault_proxy(moto_server.endpoint, [leak])
    with pytest.raises(ProbeError) as caught:
        probe(source(bucket, proxy.endpoint, prefixes=["articles/"], access_key_id="AKIAEXAMPLEKEYID0001",
                     secret_access_key=secret))
    assert secret not in str(caught.value) and "AKIAEXAMPLEKEYID0001" not in str(caught.value)
    assert "***" in caught.value.message


# ---------------------------------------------------------------------------------------
# policy parsing, as data


@pytest.mark.parametrize(("action", "access"), [
    ("s3:GetObject", "read"), ("s3:ListBucket", "read"), ("s3:Get*", "read"), ("s3:List*", "read"),
    ("s3:PutObject", "write"), ("s3:DeleteObject", "write"), ("s3:*Object", "write"),
    ("s3:AbortMultipartUpload", "write"), ("s3:Put*", "admin"), ("s3:PutBucketPolicy", "admin"),
    ("s3:PutBucketAcl", "admin"), ("s3:*", "admin"), ("*", "admin"), ("S3:GETOBJECT", "read"),
    ("kms:Decrypt", "other"),
])
def test_classify_action(action: str, access: str) -> None:
    assert classify_action(action) == access


@pytest.mark.parametrize(("condition", "pinned"), [
    (None, False),
    ({"StringEquals": {"aws:PrincipalAccount": "123456789012"}}, True),
    ({"StringEquals": {"aws:PrincipalOrgID": ["o-abc"]}}, True),
    ({"StringLike": {"aws:SourceArn": "arn:aws:cloudfront::123456789012:distribution/*"}}, False),
    ({"ArnEquals": {"aws:SourceArn": "arn:aws:cloudfront::123456789012:distribution/E1"}}, True),
    ({"StringNotEquals": {"aws:PrincipalAccount": "123456789012"}}, False),
    ({"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1"}}, False),
    ({"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}, False),
    ({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, True),
    ({"Bool": {"aws:SecureTransport": "true"}}, False),
])
def test_pinning_condition(condition: Any, pinned: bool) -> None:
    assert (pinning_condition(condition) is not None) == pinned


def test_statement_principals() -> None:
    named = statement_principals({"Principal": {"AWS": ["123456789012", ROLE], "Service": "logging.s3.amazonaws.com"}})
    assert [(p.name, p.kind, p.anyone) for p in named] == [
        ("arn:aws:iam::123456789012:root", "account", False), (ROLE, "iam", False),
        ("logging.s3.amazonaws.com", "service", False)]
    assert statement_principals({"NotPrincipal": {"AWS": ROLE}})[0].anyone


def test_resource_targets() -> None:
    assets = ["articles/", "archive/", "macros/", ROOT_ASSET]
    assert resource_targets(["arn:aws:s3:::kb/*"], "kb", assets) == (True, set(), [])
    assert resource_targets(["arn:aws:s3:::kb"], "kb", assets) == (True, set(), [])
    assert resource_targets(["arn:aws:s3:::other/*"], "kb", assets) == (False, set(), [])
    assert resource_targets(["arn:aws:s3:::kb/articles/2024/*"], "kb", assets)[1] == {"articles/"}
    # `ar*` also matches keys at the root such as `arx.txt`: reporting more beats hiding access.
    assert resource_targets(["arn:aws:s3:::kb/ar*"], "kb", assets)[1] == {"articles/", "archive/", ROOT_ASSET}
    assert resource_targets(["arn:aws:s3:::kb/articles/*"], "kb", assets)[1] == {"articles/"}
    assert resource_targets(["arn:aws:s3:::kb/top.txt"], "kb", assets)[1] == {ROOT_ASSET}
    assert resource_targets(["arn:aws:s3:::kb/gone/*"], "kb", assets) == (False, set(), ["arn:aws:s3:::kb/gone/*"])
