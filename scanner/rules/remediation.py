"""Remediation texts that depend on the connector: each names only what that system has."""

from __future__ import annotations

from collections.abc import Sequence


def public_access_remediation(connector: str, principals: Sequence[str], writable: bool) -> str:
    """How to remove a public grant on this kind of system (no buckets for a table, no chmod for S3)."""
    who = ", ".join(principals) or "PUBLIC"
    if connector == "postgres":
        return (f"Revoke the grant from {who} (REVOKE ... ON <table> FROM PUBLIC; also check default "
                "privileges with ALTER DEFAULT PRIVILEGES) and grant the workflows' roles instead.")
    if connector == "mysql":
        return (f"Revoke the privileges of {who} (REVOKE ... ON <db>.<table> FROM the anonymous or "
                "wildcard account) and grant the workflows' users instead.")
    if connector == "s3":
        return ("Turn on the bucket's public access block, remove the public statements from the bucket "
                "policy and the AllUsers/AuthenticatedUsers ACL grants, and grant the workflows' roles instead.")
    if connector == "bigquery":
        return ("Remove allUsers/allAuthenticatedUsers from the dataset access entries and table IAM "
                "policies, and grant the workflows' service accounts instead.")
    if connector == "files":
        return ("Remove the world permission bits (chmod o-rwx, or o-w when only writes are public) "
                "and give the workflows' accounts access through the group instead.")
    return (f"Remove the public grant to {who}{' (it can write)' if writable else ''} "
            "and grant the workflows' principals instead.")
