"""The storage layout is declared once, in ``schemas/``: CQL statements and Redis hashes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from feedline.rules.effects import MediaRef, PostUpsert
from schemas import cql_statements
from schemas.redis_hashes import (
    POST_FIELDS,
    decode_post,
    decode_post_counters,
    decode_user_counters,
    encode_post,
    encode_post_counters,
    encode_user_counters,
)

ROOT = Path(__file__).resolve().parents[2]
#: CQL data statements as they appear in code (keywords are upper case there).
CQL_TEXT = re.compile(
    r"\b(SELECT\b.*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+(USING|SET)|DELETE\s+FROM)\b")


def _source_files() -> list[Path]:
    """Python files of the repository (git's view: tracked or not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT, capture_output=True, text=True, check=False)
    if listed.returncode == 0 and listed.stdout.strip():
        return [ROOT / name for name in listed.stdout.split()]
    skip = {".venv", ".local", "build", ".git"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def test_no_cql_statement_text_outside_schemas() -> None:
    offenders = []
    for path in _source_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] in ("tests", "schemas") or not path.exists():
            continue
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if CQL_TEXT.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == [], "CQL statements belong in schemas/cql_statements.py"


def test_the_check_would_see_a_statement() -> None:
    assert CQL_TEXT.search('    "SELECT a, b FROM t WHERE k = ?",')
    assert CQL_TEXT.search('x = "DELETE FROM t USING TIMESTAMP ? WHERE k = ?"')
    assert CQL_TEXT.search('"UPDATE user_counters USING TIMESTAMP ? SET posts = ?"')
    assert not CQL_TEXT.search("# select the rows from the store, then update them")


def test_every_statement_has_one_name_and_its_write_time_in_place() -> None:
    texts = list(cql_statements.STATEMENTS.values())
    assert len(texts) == len(set(texts)), "a statement is declared twice"
    for name, cql in cql_statements.WRITES.items():
        assert cql.count("USING TIMESTAMP ?") == 1, name
        bound = cql_statements.bind_write(name, ("v",), 7)
        assert bound == ((7, "v") if not cql.startswith("INSERT") else ("v", 7)), name
    for name in cql_statements.USER_COUNTER_WRITES.values():
        assert name in cql_statements.WRITES


def test_redis_hashes_round_trip() -> None:
    media = (MediaRef("m1", "image/jpeg", "gs://b/m1"),)
    upsert = PostUpsert("p1", "a1", 1_700_000_000_123, "hi", media, "e1")
    fields = encode_post(upsert)
    assert tuple(fields) == POST_FIELDS
    post = decode_post(fields)
    assert (post.post_id, post.author_id, post.caption, post.created_ms) == (
        "p1", "a1", "hi", 1_700_000_000_123)
    assert post.media == [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/m1"}]
    as_stored = {k: str(v) for k, v in encode_post_counters(3, 4).items()}
    assert decode_post_counters(as_stored) == (3, 4)
    assert decode_post_counters({b"likes": b"2"}) == (2, 0)
    stored = {k.encode(): str(v).encode() for k, v in encode_user_counters({"posts": 5}).items()}
    assert decode_user_counters(stored) == {"posts": 5}
