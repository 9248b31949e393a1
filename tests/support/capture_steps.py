"""The capture tests' Eco2 workload: seed SQL, streaming steps, and the lake-vs-PostgreSQL check
(shared by tests/capture/test_capture.py and the Avro capture test in tests/lake/test_avro.py)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from lakehouse.lake.reader import LakeReader
from lakehouse.lake.store import LocalStore
from support.oracle import compare, lake_state, pg_state

TABLES = {  # topic -> (table, primary key)
    "eco2.auth.users": ("auth.users", ("id",)),
    "eco2.scan.scans": ("scan.scans", ("id",)),
    "eco2.scan.classification_results": ("scan.classification_results", ("id",)),
    "eco2.scan.rag_retrievals": ("scan.rag_retrievals", ("id",)),
    "eco2.scan.llm_call_log": ("scan.llm_call_log", ("id",)),
    "eco2.scan.feedback": ("scan.feedback", ("id",)),
}

SEED_SQL = """
INSERT INTO auth.users (username, email, password_hash, provider, created_at)
SELECT '사용자' || g, 'user' || g || '@eco2.test', '$2b$12$' || md5(g::text), (ARRAY['kakao','google','apple','email'])[1 + g % 4],
       now() - (g || ' minutes')::interval
FROM generate_series(1, {users}) g;
INSERT INTO scan.scans (id, user_id, image_path_raw, status, created_at)
SELECT md5('scan' || g)::uuid, 1 + g % {users}, 's3://eco2-images/raw/' || g || '.jpg', 'pending', now()
FROM generate_series(1, {scans}) g;
INSERT INTO scan.classification_results (scan_id, category, item, confidence, rationale, model, prompt_version, created_at)
SELECT md5('scan' || g)::uuid, (ARRAY['plastic','glass','paper','can'])[1 + g % 4], 'pet_bottle', 0.5 + (g % 50) / 100.0,
       CASE WHEN g % 3 = 0 THEN '분리수거 근거: ' || (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 120) i)
            ELSE 'short rationale ' || g END,
       'gpt-4o-mini', 'v3', now()
FROM generate_series(1, {scans}) g;
INSERT INTO scan.rag_retrievals (scan_id, rank, document_id, chunk_id, chunk_text, relevance_score, created_at)
SELECT md5('scan' || g)::uuid, r, 'doc-' || r, 'chunk-' || g || '-' || r, '페트병은 라벨을 제거하고 배출합니다', 1.0 / r, now()
FROM generate_series(1, {scans}) g, generate_series(1, 3) r;
INSERT INTO scan.llm_call_log (scan_id, stage, model, latency_ms, prompt_tokens, completion_tokens, status, created_at)
SELECT md5('scan' || (1 + g % {scans}))::uuid, (ARRAY['vision','embedding','answer'])[1 + g % 3], 'gpt-4o-mini',
       100 + g % 900, 1000 + g % 500, 50 + g % 100, CASE WHEN g % 20 = 0 THEN 'error' ELSE 'ok' END, now()
FROM generate_series(1, {calls}) g;
INSERT INTO scan.feedback (scan_id, user_id, thumbs_up, corrected_category, comment, created_at)
SELECT md5('scan' || g)::uuid, 1 + g % {users}, g % 2 = 0, CASE WHEN g % 2 = 1 THEN 'glass' END, '좋아요', now()
FROM generate_series(1, {scans}, 2) g;
"""

STREAM_STEPS = [
    # one transaction across tables, Korean text
    """INSERT INTO scan.scans (id, user_id, image_path_raw, status, created_at)
       VALUES ('00000000-0000-0000-0000-00000000abcd', 1, 's3://eco2-images/raw/new.jpg', 'pending', now());
       INSERT INTO scan.classification_results (scan_id, category, item, confidence, rationale, model, created_at)
       VALUES ('00000000-0000-0000-0000-00000000abcd', 'vinyl', '비닐봉지', 0.8765, '비닐류로 분류', 'gpt-4o', now());
       INSERT INTO scan.llm_call_log (scan_id, stage, model, latency_ms, prompt_tokens, completion_tokens, status, created_at)
       VALUES ('00000000-0000-0000-0000-00000000abcd', 'vision', 'gpt-4o', 1520, 1800, 96, 'ok', now())""",
    # update that leaves the TOASTed rationale unchanged -> placeholder in the event
    "UPDATE scan.classification_results SET confidence = 0.1234 WHERE id = 3",
    # update that changes it
    "UPDATE scan.classification_results SET rationale = rationale || ' [검토됨]' WHERE id = 6",
    "UPDATE scan.scans SET status = 'completed', completed_at = now(), image_path_processed = 's3://eco2-images/p/1.jpg' WHERE user_id <= 3",
    # deletes under REPLICA IDENTITY DEFAULT and FULL
    "DELETE FROM scan.llm_call_log WHERE id IN (2, 4)",
    "ALTER TABLE scan.feedback REPLICA IDENTITY FULL",
    "UPDATE scan.feedback SET thumbs_up = NOT thumbs_up, updated_at = now() WHERE id = 1",
    "DELETE FROM scan.feedback WHERE id = 2",
    # primary-key change of a row whose rationale is TOASTed (the c half carries the placeholder)
    "UPDATE scan.classification_results SET id = 100000 WHERE id = 9",
    # truncate, then new rows
    "TRUNCATE scan.rag_retrievals",
    """INSERT INTO scan.rag_retrievals (scan_id, rank, document_id, chunk_id, chunk_text, relevance_score, created_at)
       VALUES ('00000000-0000-0000-0000-00000000abcd', 1, 'doc-9', 'c-9', '비닐은 깨끗이 헹궈서', 0.91, now())""",
    # ADD COLUMN (nullable: PostgreSQL shows NULL for older rows, as the lake does), then DML
    "ALTER TABLE scan.llm_call_log ADD COLUMN cached_tokens integer",
    """INSERT INTO scan.llm_call_log (scan_id, stage, model, latency_ms, prompt_tokens, completion_tokens, status, created_at, cached_tokens)
       VALUES ('00000000-0000-0000-0000-00000000abcd', 'answer', 'gpt-4o', 640, 420, 150, 'ok', now(), 64)""",
    "UPDATE scan.llm_call_log SET cached_tokens = 12 WHERE id = 5",
    # DROP COLUMN, then DML
    "ALTER TABLE scan.feedback DROP COLUMN comment",
    """INSERT INTO scan.feedback (scan_id, user_id, thumbs_up, corrected_category, created_at)
       VALUES ('00000000-0000-0000-0000-00000000abcd', 1, false, 'plastic', now())""",
    # account closure
    "DELETE FROM auth.users WHERE id = 7",
    "UPDATE auth.users SET password_hash = '$2b$12$rotated', updated_at = now() WHERE id = 1",
]


def lake_matches_pg(lake: Path, dsn: str):
    reader = LakeReader(LocalStore(lake))
    topics = set(reader.scan().topics)
    problems = []
    for topic, (table, key) in TABLES.items():
        lake_rows = lake_state(reader, topic, key) if topic in topics else {}
        diff = compare(lake_rows, pg_state(dsn, table, key))
        problems += [f"{table}: {d}" for d in diff]
    return True if not problems else problems[:8]


def seed(dsn: str, users: int = 20, scans: int = 30, calls: int = 90) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SEED_SQL.format(users=users, scans=scans, calls=calls))
