"""A seeded mutator over configs/*.yaml: `validate` exits 0 or 2 and never prints a traceback."""

from __future__ import annotations

import random
from pathlib import Path

from click.testing import CliRunner

from scanner.cli import main

ROOT = Path(__file__).resolve().parent.parent
CASES = 2000
# Tokens that once crashed the YAML library or the checks after it.
HOSTILE = ["2027-02-30", "!!int x", "!!float y", "!!bool maybe", "!!timestamp z", "2026-01-01T00:00:00-25:00",
           ".inf", "-.inf", ".nan", "99999999999999999999d", "*a", "&a", "&a [*a]", "[[[[[[", "{{{{", "!!binary ~",
           "!!python/object:os.system", "~", "''", "\"\\x00\"", "${UNSET_VAR}", "1e999", "-1", "0s", "0x", "!!set {a}",
           "<<: *a", "? [a]", "|", ">-", "\t", "\u202e", "\x1b[31m", "%YAML 1.1", "---", "...", "@", "`"]
PUNCTUATION = list("[]{}:,&*!|>'\"-#%@\n ?")


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(lines))
        if op == 0:
            lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)] + rng.choice(HOSTILE) + "\n"
        elif op == 1:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice(PUNCTUATION) + lines[i][pos:]
        elif op == 2 and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {rng.choice(HOSTILE)}\n"
        elif op == 3:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 4 and len(lines) > 1:
            del lines[i]
        else:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


def test_validate_survives_mutated_inventories(tmp_path: Path) -> None:
    rng = random.Random(12)
    seeds = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "configs").glob("*.yaml"))]
    assert seeds
    runner = CliRunner()
    path = tmp_path / "ctxscan.yaml"
    codes: dict[int, int] = {}
    for case in range(CASES):
        text = mutate(rng.choice(seeds), rng)
        path.write_text(text, encoding="utf-8")
        result = runner.invoke(main, ["validate", "-c", str(path), "--state", str(tmp_path / "s.db")],
                               env={"CTXSCAN_CONFIG": None, "CTXSCAN_STATE": None})
        output = result.output
        assert result.exit_code in (0, 2) and "Traceback" not in output, (
            f"case {case}: exit {result.exit_code}\n{text}\n{output}\n{result.exception!r}")
        assert result.exception is None or isinstance(result.exception, SystemExit), (case, text, result.exception)
        codes[result.exit_code] = codes.get(result.exit_code, 0) + 1
    assert codes.get(2, 0) > CASES // 4, codes  # the mutations really break things
