"""Principal names as people write them in `runs_as`, resolved to the names connectors report.

Each connector knows how its system names principals; these helpers turn the spellings a
user writes (a bare e-mail, a bare user name, a role name) into those names. A connector
records what it resolved as `state["resolved_principals"]` plus an alias membership (the
written name -> the principal), so every path, finding and `why` answers for the name the
inventory uses; a name that resolves to nothing the system knows goes to
`state["unknown_principals"]` (an `unknown_principal` finding), never to a silent "no access".
"""

from __future__ import annotations

from collections.abc import Mapping

from scanner.model import Membership

SERVICE_ACCOUNT_DOMAIN = ".gserviceaccount.com"
# Prefixes IAM writes before a member (https://cloud.google.com/iam/docs/principal-identifiers).
IAM_PREFIXES = ("user:", "serviceAccount:", "group:", "domain:", "principal:", "principalSet:", "deleted:")


def bigquery_member(name: str) -> str:
    """`x@p.iam.gserviceaccount.com` -> `serviceAccount:x@...`; `a@b.com` -> `user:a@b.com`;
    names with an IAM prefix (`group:`, `domain:`, ...) and special groups stay as written."""
    if name.startswith(IAM_PREFIXES) or "@" not in name:
        return name
    return f"serviceAccount:{name}" if name.lower().endswith(SERVICE_ACCOUNT_DOMAIN) else f"user:{name}"


def email_domain(member: str) -> str | None:
    """The domain of a `user:` or `serviceAccount:` member, which a `domain:` entry covers."""
    kind, _, email = member.partition(":")
    if kind not in ("user", "serviceAccount") or "@" not in email:
        return None
    return email.rpartition("@")[2].lower()


def files_principal(name: str) -> tuple[str, str]:
    """(`user:NAME` or `group:NAME`, the bare NAME): a name without a prefix is a user."""
    if name.startswith("group:"):
        return name, name[len("group:"):]
    if name.startswith("user:"):
        return name, name[len("user:"):]
    return f"user:{name}", name


def s3_principal(name: str, account_id: str | None) -> str | None:
    """A full ARN as written; a role name (`support-bot`, `role/support-bot`) with the account
    id; None when a role name has no account to complete it."""
    if name.startswith("arn:"):
        return name
    if not account_id:
        return None
    role = name[len("role/"):] if name.startswith("role/") else name
    return f"arn:aws:iam::{account_id}:role/{role}"


def alias_memberships(resolved: Mapping[str, str]) -> list[Membership]:
    """An inheriting edge from each written name to the principal it stands for (no SET ROLE:
    these systems have none)."""
    return [Membership(name, principal, True, can_set=False)
            for name, principal in sorted(resolved.items()) if name != principal]
