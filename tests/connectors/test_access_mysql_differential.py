"""Differential test: the mysql connector's access verdicts against MariaDB's own answer.

Each seed builds a random estate (databases with wildcard-prone names, tables, global,
database, table and column grants with and without GRANT OPTION, roles with default and
non-default grants, nested roles, one user name on the hosts '%' and '127.0.0.1'), scans it
with the connector, then logs in AS every account over TCP and tries SELECT, INSERT,
UPDATE, DELETE (each rolled back) and TRUNCATE (on an empty table) on every table: at
login (the effective level) and after each `SET ROLE` (the via_set_role level, cumulative as
ctxscan's: what it can do at login or after some SET ROLE). Every verdict of ctxscan must
equal the server's.

An account `u@127.0.0.1` is reached by connecting from 127.0.0.1; `u@%` by connecting from
127.0.0.2 (still to the server on 127.0.0.1), the only way to log in as the '%' account
while a more specific one exists.
"""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from connectors.mysql import MysqlConnector
from scanner.access import LEVEL_EFFECTIVE, LEVEL_SET_ROLE, PrincipalAccess
from scanner.model import ACCESS_READ, ACCESS_WRITE, SourceSnapshot
from scanner.plugins import ProbeContext, SourceConfig
from tests.connectors.dbservers import MYSQL_HOST, MYSQL_PORT

if TYPE_CHECKING:
    from tests.connectors.dbservers import MysqlServer

pytest_plugins = ("tests.connectors.dbservers",)

# More seeds for a longer hunt: CTXSCAN_MYSQL_DIFF_SEEDS=1-200
_SPAN = os.environ.get("CTXSCAN_MYSQL_DIFF_SEEDS", "1-3").partition("-")
SEEDS = tuple(range(int(_SPAN[0]), int(_SPAN[2] or _SPAN[0]) + 1))
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "CREATE", "INDEX")
COLUMNS = ("id", "v")
DENIED = {1142, 1143, 1044}       # table, column, database access denied
ROLE_NOT_GRANTED = 1959


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Account:
    user: str
    host: str
    password: str

    @property
    def name(self) -> str:
        return f"{self.user}@{self.host}"

    @property
    def sql(self) -> str:
        return f"'{self.user}'@'{self.host}'"

    @property
    def client_address(self) -> str:
        # The login picks the most specific account: '%' is reachable only from another host.
        return "127.0.0.1" if self.host == "127.0.0.1" else "127.0.0.2"


@dataclass
class Estate:
    prefix: str
    databases: list[str]
    tables: list[tuple[str, str]]
    roles: list[str]
    accounts: list[Account]
    statements: list[str]


def build_estate(server: MysqlServer, seed: int) -> Estate:
    """A random estate of our own (names carry a random prefix); the server fixture drops it."""
    rng = random.Random(seed)
    prefix = f"dx{uuid.uuid4().hex[:6]}"
    # a1/a2/ab share wildcard-matching names: `a_` and `a%` patterns overlap literal names
    databases = [f"{prefix}_a1", f"{prefix}_a2", f"{prefix}_ab", f"{prefix}_b1", f"{prefix}_c1"]
    tables: list[tuple[str, str]] = []
    for db in databases:
        server.create_database(db)
        for table in rng.sample(["t1", "t2", "t3"], rng.randint(1, 3)):
            server.execute(f"CREATE TABLE {q(db)}.{q(table)} (id INT NULL, v INT NULL) ENGINE=InnoDB")
            tables.append((db, table))
    roles = [server.create_role(f"{prefix}r{i}") for i in range(5)]
    accounts: list[Account] = []
    for i in range(6):
        user = f"{prefix}u{i}"
        hosts = ["%", "127.0.0.1"] if i < 3 or rng.random() < 0.5 else [rng.choice(["%", "127.0.0.1"])]
        for host in hosts:
            password = f"pw-{uuid.uuid4().hex[:12]}"
            server.create_user("unused", host=host, password=password, user=user)
            accounts.append(Account(user, host, password))
    db_patterns = [*databases, f"{prefix}\\_a%", f"{prefix}_a_", f"{prefix}%", f"{prefix}\\_a1"]
    grantees = [a.sql for a in accounts] + [q(r) for r in roles]
    statements: list[str] = []

    def privileges() -> str:
        return ", ".join(rng.sample(PRIVILEGES, rng.randint(1, 3)))

    def option() -> str:
        return " WITH GRANT OPTION" if rng.random() < 0.2 else ""

    for _ in range(rng.randint(1, 2)):
        statements.append(f"GRANT {rng.choice(['SELECT', 'INSERT', 'DELETE', 'ALTER', 'USAGE'])} ON *.* "
                          f"TO {rng.choice(grantees)}{option()}")
    statements.append(f"GRANT USAGE ON *.* TO {rng.choice(grantees)} WITH GRANT OPTION")
    for _ in range(20):
        statements.append(f"GRANT {privileges()} ON {q(rng.choice(db_patterns))}.* TO {rng.choice(grantees)}"
                          f"{option()}")
    for _ in range(14):
        db, table = rng.choice(tables)
        statements.append(f"GRANT {privileges()} ON {q(db)}.{q(table)} TO {rng.choice(grantees)}{option()}")
    for _ in range(8):
        db, table = rng.choice(tables)
        privilege = rng.choice(["SELECT", "INSERT", "UPDATE"])
        statements.append(f"GRANT {privilege} ({rng.choice(COLUMNS)}) ON {q(db)}.{q(table)} "
                          f"TO {rng.choice(grantees)}")
    if rng.random() < 0.5:
        db, table = rng.choice(tables)
        statements.append(f"GRANT SELECT ON {q(db)}.{q(table)} TO PUBLIC")
    # nested roles: r1 holds r0 (r0's wider patterns can be shadowed by r1's own rows)
    statements.append(f"GRANT {q(roles[0])} TO {q(roles[1])}")
    for account in accounts:
        granted = rng.sample(roles, rng.randint(0, 2))
        for role in granted:
            statements.append(f"GRANT {q(role)} TO {account.sql}")
        if granted and rng.random() < 0.6:
            statements.append(f"SET DEFAULT ROLE {q(rng.choice(granted))} FOR {account.sql}")
    # a default role granted to the same user on the other host only (SET ROLE matches on host)
    statements.append(f"GRANT {q(roles[2])} TO {accounts[0].sql}")
    statements.append(f"SET DEFAULT ROLE {q(roles[2])} FOR {accounts[1].sql}")
    for statement in statements:
        server.execute(statement)
    return Estate(prefix, databases, tables, roles, accounts, statements)


# ---------------------------------------------------------------------------------------
# The server's answer


def _try(cursor: Any, statement: str) -> bool:
    import pymysql

    try:
        cursor.execute(statement)
        return True
    except pymysql.err.MySQLError as exc:
        if exc.args and exc.args[0] in DENIED:
            return False
        raise
    finally:
        cursor.connection.rollback()


def server_verdicts(cursor: Any, db: str, table: str) -> tuple[bool, bool]:
    """(can read, can change data) as the session's statements say."""
    on = f"{q(db)}.{q(table)}"
    read = any(_try(cursor, f"SELECT {q(c)} FROM {on} LIMIT 0") for c in COLUMNS)
    write = (any(_try(cursor, f"INSERT INTO {on} ({q(c)}) VALUES (NULL)") for c in COLUMNS)
             or any(_try(cursor, f"UPDATE {on} SET {q(c)} = NULL WHERE FALSE") for c in COLUMNS)
             or _try(cursor, f"DELETE FROM {on} WHERE FALSE")
             or _try(cursor, f"TRUNCATE TABLE {on}"))   # needs DROP; the table is always empty
    return read, write


@dataclass
class ServerAnswer:
    effective: dict[tuple[str, str, str], tuple[bool, bool]]        # (account, db, table)
    via_set_role: dict[tuple[str, str, str], tuple[bool, bool]]


def ask_server(estate: Estate) -> ServerAnswer:
    import pymysql

    answer = ServerAnswer({}, {})
    for account in estate.accounts:
        conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=account.user, password=account.password,
                               bind_address=account.client_address, autocommit=False, connect_timeout=10)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT CURRENT_USER()")
                assert cursor.fetchone()[0] == account.name, "logged in as another account than meant"
                for db, table in estate.tables:
                    answer.effective[(account.name, db, table)] = server_verdicts(cursor, db, table)
                via: dict[tuple[str, str], tuple[bool, bool]] = {}
                for role in estate.roles:
                    try:
                        cursor.execute(f"SET ROLE {q(role)}")
                    except pymysql.err.MySQLError as exc:
                        if exc.args[0] != ROLE_NOT_GRANTED:
                            raise
                        continue
                    for db, table in estate.tables:
                        read, write = server_verdicts(cursor, db, table)
                        before = via.get((db, table), (False, False))
                        via[(db, table)] = (before[0] or read, before[1] or write)
                for db, table in estate.tables:
                    # Like ctxscan's levels, cumulative: what it can do now, or after some SET ROLE.
                    now = answer.effective[(account.name, db, table)]
                    after = via.get((db, table), (False, False))
                    answer.via_set_role[(account.name, db, table)] = (now[0] or after[0], now[1] or after[1])
        finally:
            conn.close()
    return answer


# ---------------------------------------------------------------------------------------
# ctxscan's answer


def scan(server: MysqlServer, estate: Estate) -> SourceSnapshot:
    source = SourceConfig(id="estate", connector="mysql", settings={"url": server.url()},
                          include=(f"{estate.prefix}_*",))
    context = ProbeContext(now=datetime.now(UTC), principals=frozenset(a.name for a in estate.accounts))
    return MysqlConnector(source).probe(context)


def ctxscan_verdicts(snapshot: SourceSnapshot, estate: Estate) -> ServerAnswer:
    """The access model's effective and via_set_role verdicts for every account and table."""
    answer = ServerAnswer({}, {})
    for account in estate.accounts:
        access = PrincipalAccess(snapshot, account.name)
        for db, table in estate.tables:
            asset = snapshot.asset(f"{db}.{table}")
            assert asset is not None, (db, table)
            report = access.report(asset)
            for level, into in ((LEVEL_EFFECTIVE, answer.effective), (LEVEL_SET_ROLE, answer.via_set_role)):
                into[(account.name, db, table)] = (report.can(ACCESS_READ, level), report.can(ACCESS_WRITE, level))
    return answer


def confusion(ours: ServerAnswer, theirs: ServerAnswer) -> tuple[Counter[str], list[str]]:
    """TP/FP/FN/TN per level and operation, and a line for each disagreement."""
    matrix: Counter[str] = Counter()
    wrong: list[str] = []
    for level in ("effective", "via_set_role"):
        mine, truth = getattr(ours, level), getattr(theirs, level)
        for key in sorted(truth):
            for index, operation in enumerate(("read", "write")):
                said, real = mine[key][index], truth[key][index]
                cell = ("TP" if real else "FP") if said else ("FN" if real else "TN")
                matrix[f"{level}.{operation}.{cell}"] += 1
                if said != real:
                    wrong.append(f"{level} {operation} {key[0]} on {key[1]}.{key[2]}: ctxscan {said}, server {real}")
    return matrix, wrong


@pytest.fixture(scope="module")
def matrices() -> Iterator[dict[int, Counter[str]]]:
    collected: dict[int, Counter[str]] = {}
    yield collected
    total: Counter[str] = sum(collected.values(), Counter())
    print("\nmysql access confusion matrix over seeds", sorted(collected), dict(sorted(total.items())))


@pytest.mark.parametrize("seed", SEEDS)
def test_access_verdicts_equal_what_mariadb_answers(mysql_server: MysqlServer, seed: int,
                                                    matrices: dict[int, Counter[str]]) -> None:
    if not mysql_server.mariadb:
        pytest.fail("the differential estate uses MariaDB roles (the server here is MariaDB)")
    estate = build_estate(mysql_server, seed)
    truth = ask_server(estate)
    snapshot = scan(mysql_server, estate)
    matrix, wrong = confusion(ctxscan_verdicts(snapshot, estate), truth)
    matrices[seed] = matrix
    print(f"\nseed {seed}: {dict(sorted(matrix.items()))}")
    # The estate must exercise both answers at both levels, or agreeing proves little.
    for level in ("effective", "via_set_role"):
        for operation in ("read", "write"):
            assert matrix[f"{level}.{operation}.TP"] + matrix[f"{level}.{operation}.FN"] > 0, (level, operation)
            assert matrix[f"{level}.{operation}.TN"] + matrix[f"{level}.{operation}.FP"] > 0, (level, operation)
    assert not wrong, f"{len(wrong)} disagreements (seed {seed}):\n" + "\n".join(wrong[:40]) + \
        "\nestate:\n" + "\n".join(estate.statements)

