"""How MariaDB (and MySQL) resolve the grant tables for a session, as pure functions.

The server does not add up every grant row that could apply. For a session of user `u`
from client host `H`:

- global privileges come from the account the login picked (`u@h`), or, while a role is
  active, from the account the role is granted to that matches `u` and `H` (MariaDB's
  check_user_can_set_role), plus the role's;
- database privileges come from the FIRST `mysql.db` row whose user is `u` (or anonymous),
  whose host pattern matches `H` and whose database pattern matches the database, most
  specific first (MariaDB's get_magic_sort on host, database, user): a `d%` SELECT row and
  a literal `d2` INSERT row give INSERT only on d2;
- table and column privileges come from the one `tables_priv` row (with its
  `columns_priv` rows) of `u` for that table whose host matches `H`, the most specific host;
- rows are matched on user name plus client host, not on the account: `u@127.0.0.1`
  also uses the database and table rows of `u@%`, and may SET ROLE to roles granted to
  `u@%`;
- a role's privileges are its own merged with those of every role granted to it, per
  database pattern, and then the same first-row rule applies: a sub-role's `d%` row is
  shadowed by the role's own `d1` row on d1.

The client host of an account `u@h` is taken to be `h` itself when it is literal, else a
host that only `h`'s pattern (and patterns at least as wide) match: a row's host pattern
applies when it matches the text `h`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

# MariaDB's limits for the pattern ranking (NAME_LEN and HOSTNAME_LENGTH, in characters).
MAX_DATABASE_LENGTH = 64
MAX_HOST_LENGTH = 255


@lru_cache(maxsize=4096)
def like_regex(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """A grant-table pattern (`%` and `_` wildcards, `\\` escapes) as a regex."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def host_applies(row_host: str, account_host: str) -> bool:
    """Whether a row for `user@row_host` applies to a session of the account `user@account_host`."""
    if row_host in ("", "%") or row_host.lower() == account_host.lower():
        return True
    return bool(like_regex(row_host, True).fullmatch(account_host))


def database_matches(pattern: str, database: str) -> bool:
    """Whether a `mysql.db` database pattern covers a database."""
    return bool(like_regex(pattern).fullmatch(database))


def magic(pattern: str, max_length: int) -> int:
    """MariaDB's get_magic_sort for one pattern: smaller is more specific."""
    literal = wild_one = wild_many = prefix = 0
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "%":
            if not wild_many and not wild_one:
                prefix = literal
            wild_many += 1
            while i + 1 < len(pattern) and pattern[i + 1] == "%":
                i += 1
        elif char == "_":
            if not wild_many and not wild_one:
                prefix = literal
            wild_one += 1
        else:
            if char == "\\" and i + 1 < len(pattern):
                i += 1
            literal += 1
        i += 1
    wild_many, wild_one = min(wild_many, 31), min(wild_one, 31)
    rest = max(0, max_length - literal - wild_one) if wild_many else 0
    base = max_length + 1
    narrow = min(base, 32)
    if rest > wild_one:
        return (((rest * 2 + 1) * base + wild_many) * narrow + wild_one) * base + prefix
    return (((wild_one * 2) * base + rest) * narrow + wild_many) * base + prefix


@dataclass(frozen=True)
class DatabaseRow:
    """One `mysql.db` row."""

    user: str
    host: str
    database: str
    privileges: tuple[str, ...]

    @property
    def rank(self) -> tuple[int, int, int]:
        """The server's order: most specific host, then database, then a named user first."""
        return (magic(self.host, MAX_HOST_LENGTH), magic(self.database, MAX_DATABASE_LENGTH),
                1 if self.user == "" else 0)


@dataclass
class TableRow:
    """One `tables_priv` row with the `columns_priv` rows of the same grantee and table."""

    user: str
    host: str
    database: str
    table: str
    privileges: tuple[str, ...] = ()
    columns: dict[str, list[str]] = field(default_factory=dict)   # privilege -> column names


@dataclass(frozen=True)
class Found:
    """Privileges that apply, with the grant rows they come from (for `why`)."""

    privileges: tuple[str, ...]
    grantees: tuple[tuple[str, str], ...]     # (user, host) of each row that gave them
    pattern: str = ""                         # the database pattern, for database rows
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class GrantTables:
    """The rows of the grant tables, indexed by user, with the server's lookups."""

    def __init__(self, databases: Iterable[DatabaseRow], tables: Iterable[TableRow],
                 role_grants: Iterable[tuple[str, str, str, str]], roles: Iterable[tuple[str, str]]) -> None:
        self.databases: dict[str, list[DatabaseRow]] = {}
        for row in databases:
            self.databases.setdefault(row.user, []).append(row)
        self.tables: dict[tuple[str, str, str], list[TableRow]] = {}
        self.tables_of: dict[str, set[tuple[str, str]]] = {}
        for table_row in tables:
            self.tables.setdefault((table_row.user, table_row.database, table_row.table), []).append(table_row)
            self.tables_of.setdefault(table_row.user, set()).add((table_row.database, table_row.table))
        # (grantee user, grantee host, role user, role host)
        self.role_grants = list(role_grants)
        self.roles = set(roles)

    # -- accounts -------------------------------------------------------------------------

    def database_privileges(self, user: str, host: str, database: str) -> Found | None:
        """The first `mysql.db` row that applies to a session of `user@host` in `database`."""
        candidates = [row for row in (*self.databases.get(user, ()), *self.databases.get("", ()))
                      if host_applies(row.host, host) and database_matches(row.database, database)]
        if not candidates:
            return None
        best = min(candidates, key=lambda row: row.rank)
        return Found(best.privileges, ((best.user, best.host),), best.database)

    def table_privileges(self, user: str, host: str, database: str, table: str) -> Found | None:
        """The `tables_priv` row (most specific host) that applies to `user@host` on one table."""
        candidates = [row for row in self.tables.get((user, database, table), ()) if host_applies(row.host, host)]
        if not candidates:
            return None
        best = min(candidates, key=lambda row: magic(row.host, MAX_HOST_LENGTH))
        return Found(best.privileges, ((best.user, best.host),),
                     columns={p: tuple(sorted(c)) for p, c in best.columns.items()})

    def settable_roles(self, user: str, host: str) -> list[tuple[tuple[str, str], tuple[str, str]]]:
        """(role, the account it is granted to) for every role `user@host` may SET ROLE to.

        A role granted to the account itself comes first: when the same role is granted to
        `user@%` too, which one the server matches depends on the order it loaded the grants.
        """
        out = []
        for grantee_user, grantee_host, role_user, role_host in self.role_grants:
            if (grantee_user, grantee_host) in self.roles:
                continue
            if grantee_user == user and host_applies(grantee_host, host):
                out.append(((role_user, role_host), (grantee_user, grantee_host)))
        out.sort(key=lambda item: item[1] != (user, host))
        return out

    # -- roles ----------------------------------------------------------------------------

    def role_closure(self, role: tuple[str, str]) -> list[tuple[str, str]]:
        """The role and every role granted to it, transitively (the role first)."""
        seen = [role]
        todo = [role]
        while todo:
            current = todo.pop()
            for grantee_user, grantee_host, role_user, role_host in self.role_grants:
                child = (role_user, role_host)
                if (grantee_user, grantee_host) == current and child not in seen:
                    seen.append(child)
                    todo.append(child)
        return seen

    def role_database_privileges(self, closure: Sequence[tuple[str, str]], database: str) -> Found | None:
        """A role's database privileges: its and its sub-roles' rows merged per pattern, first match."""
        merged: dict[str, tuple[set[str], list[tuple[str, str]]]] = {}
        for role_user, role_host in closure:
            for row in self.databases.get(role_user, ()):
                if row.host == role_host and database_matches(row.database, database):
                    privileges, grantees = merged.setdefault(row.database, (set(), []))
                    privileges.update(row.privileges)
                    grantees.append((role_user, role_host))
        if not merged:
            return None
        pattern = min(merged, key=lambda p: magic(p, MAX_DATABASE_LENGTH))
        privileges, grantees = merged[pattern]
        return Found(tuple(sorted(privileges)), tuple(grantees), pattern)

    def role_table_privileges(self, closure: Sequence[tuple[str, str]], database: str,
                              table: str) -> list[tuple[tuple[str, str], Found]]:
        """Each (role, its table row) of the closure on one table: these add up."""
        out = []
        for role_user, role_host in closure:
            for row in self.tables.get((role_user, database, table), ()):
                if row.host == role_host:
                    out.append(((role_user, role_host), Found(row.privileges, ((role_user, role_host),),
                                columns={p: tuple(sorted(c)) for p, c in row.columns.items()})))
        return out
