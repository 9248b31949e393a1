"""A scripted Eco2 workload on real PostgreSQL: the two service databases (auth, scan) doing what
the app does — sign-ups, photo scans through vision → RAG → answer, classifications with long
rationales, feedback that users change or withdraw, re-scored classifications (updates that leave
the TOASTed rationale alone), account closures.

Deterministic per seed. Used by ``make demo`` (``DEMO_SOURCE=postgres``) and the capture tests.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SQL_DIR = Path(__file__).resolve().parents[3] / "sql" / "eco2"

CATEGORIES = {
    "plastic": ["pet_bottle", "yogurt_cup", "detergent_bottle"],
    "glass": ["soju_bottle", "jam_jar"],
    "paper": ["milk_carton", "newspaper", "box"],
    "can": ["beer_can", "tuna_can"],
    "vinyl": ["snack_wrapper", "plastic_bag"],
    "styrofoam": ["fruit_tray"],
    "food_waste": ["fruit_peel"],
    "general": ["receipt", "toothbrush"],
}
NAMES = ["민준", "서연", "도윤", "하은", "지호", "alice", "bob", "지우", "예준", "carol"]
RATIONALE = (
    "이미지에서 투명한 페트병이 보이며 라벨이 부착되어 있습니다. 라벨을 제거하고 내용물을 비운 뒤 "
    "압착하여 투명 페트병 전용 수거함에 배출해야 합니다. "
)
CHUNKS = [
    "페트병은 라벨을 제거하고 찌그러뜨려 배출합니다.",
    "유리병은 뚜껑을 분리하고 깨지지 않게 배출합니다.",
    "비닐류는 이물질을 제거한 후 투명 봉투에 담아 배출합니다.",
    "음식물이 묻은 종이는 일반쓰레기입니다.",
]
MODELS = ["gpt-4o-mini", "gpt-4o"]


@dataclass
class WorkloadReport:
    users: int = 0
    scans: int = 0
    statements: dict[str, int] = field(default_factory=dict)


def create_databases(admin_dsn: str, names: tuple[str, ...] = ("auth", "scan")) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                conn.execute(f'CREATE DATABASE "{name}"')


def load_schema(dsn: str, service: str) -> None:
    """Create the service's tables (``sql/eco2/<service>.sql``)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((SQL_DIR / f"{service}.sql").read_text())


def _rationale(rng: random.Random, long: bool) -> str:
    if not long:
        return RATIONALE[: rng.randint(40, 120)]
    # > 2 KB and poorly compressible, so PostgreSQL stores it out of line (TOAST)
    noise = "".join(hashlib.md5(f"{rng.random()}".encode()).hexdigest() for _ in range(200))
    return RATIONALE * 3 + noise


class Eco2Workload:
    """Runs in steps so a capture can start between the snapshot data and the streamed changes."""

    def __init__(self, auth_dsn: str, scan_dsn: str, seed: int = 0):
        self.auth_dsn, self.scan_dsn = auth_dsn, scan_dsn
        self.rng = random.Random(seed)
        self.report = WorkloadReport()
        self.user_ids: list[int] = []

    def _count(self, what: str, n: int = 1) -> None:
        self.report.statements[what] = self.report.statements.get(what, 0) + n

    def sign_ups(self, n: int) -> None:
        rng = self.rng
        rows = []
        for i in range(n):
            name = f"{rng.choice(NAMES)}{len(self.user_ids) + i}"
            rows.append(
                (
                    name,
                    f"{name.encode('utf-8').hex()[:12]}{len(self.user_ids) + i}@eco2.test",
                    "$2b$12$" + hashlib.sha256(name.encode()).hexdigest()[:53],
                    rng.choice(["kakao", "google", "apple", "email"]),
                )
            )
        with psycopg.connect(self.auth_dsn) as conn, conn.cursor() as cur:
            for row in rows:
                cur.execute(
                    """INSERT INTO auth.users (username, email, password_hash, provider)
                                   VALUES (%s, %s, %s, %s) RETURNING id""",
                    row,
                )
                self.user_ids.append(cur.fetchone()[0])  # type: ignore[index]
        self.report.users += n
        self._count("users.insert", n)

    def scans(self, n: int, per_transaction: int = 20) -> None:
        """Each scan: pending row, vision call + classification, embedding + retrievals, answer,
        then completed/failed; ~30% get feedback."""
        rng = self.rng
        with psycopg.connect(self.scan_dsn) as conn:
            for start in range(0, n, per_transaction):
                with conn.transaction(), conn.cursor() as cur:
                    for _ in range(min(per_transaction, n - start)):
                        self._one_scan(cur, rng)
        self.report.scans += n

    def _one_scan(self, cur, rng: random.Random) -> None:
        scan_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        user = rng.choice(self.user_ids)
        cur.execute(
            """INSERT INTO scan.scans (id, user_id, image_path_raw, status, created_at)
                       VALUES (%s, %s, %s, 'pending', now())""",
            (scan_id, user, f"s3://eco2-images/raw/{scan_id}.jpg"),
        )
        model = rng.choice(MODELS)
        category = rng.choice(list(CATEGORIES))
        ok = rng.random() > 0.04
        cur.execute(
            """INSERT INTO scan.llm_call_log (scan_id, stage, model, latency_ms, prompt_tokens, completion_tokens,
                       status, created_at) VALUES (%s, 'vision', %s, %s, %s, %s, %s, now())""",
            (
                scan_id,
                model,
                int(rng.lognormvariate(6.7, 0.4)),
                rng.randint(800, 1900),
                rng.randint(40, 160),
                "ok" if ok else rng.choice(["error", "timeout"]),
            ),
        )
        cur.execute(
            """INSERT INTO scan.classification_results (scan_id, category, item, confidence, rationale, model,
                       prompt_version, created_at) VALUES (%s, %s, %s, %s, %s, %s, 'v3', now())""",
            (
                scan_id,
                category,
                rng.choice(CATEGORIES[category]),
                round(rng.uniform(0.35, 0.99), 4),
                _rationale(rng, rng.random() < 0.3),
                model,
            ),
        )
        cur.execute(
            """INSERT INTO scan.llm_call_log (scan_id, stage, model, latency_ms, prompt_tokens, completion_tokens,
                       status, created_at) VALUES (%s, 'embedding', 'text-embedding-3-small', %s, %s, 0, 'ok', now())""",
            (scan_id, int(rng.lognormvariate(4.5, 0.3)), rng.randint(20, 80)),
        )
        for rank in range(1, rng.randint(3, 5) + 1):
            cur.execute(
                """INSERT INTO scan.rag_retrievals (scan_id, rank, document_id, chunk_id, chunk_text,
                           relevance_score, created_at) VALUES (%s, %s, %s, %s, %s, %s, now())""",
                (
                    scan_id,
                    rank,
                    f"guide-{rng.randint(1, 40)}",
                    f"c{rng.randint(1, 900)}",
                    rng.choice(CHUNKS),
                    round(max(0.0, 0.95 - 0.12 * rank + rng.uniform(-0.1, 0.1)), 4),
                ),
            )
        cur.execute(
            """INSERT INTO scan.llm_call_log (scan_id, stage, model, latency_ms, prompt_tokens, completion_tokens,
                       status, created_at) VALUES (%s, 'answer', %s, %s, %s, %s, 'ok', now())""",
            (scan_id, model, int(rng.lognormvariate(6.2, 0.35)), rng.randint(300, 700), rng.randint(80, 260)),
        )
        cur.execute(
            """UPDATE scan.scans SET status = %s, completed_at = now(), image_path_processed = %s
                       WHERE id = %s""",
            ("completed" if ok else "failed", f"s3://eco2-images/processed/{scan_id}.jpg", scan_id),
        )
        self._count("scan", 1)
        if ok and rng.random() < 0.3:
            thumbs = rng.random() < 0.7
            corrected = None if thumbs else rng.choice(list(CATEGORIES))
            cur.execute(
                """INSERT INTO scan.feedback (scan_id, user_id, thumbs_up, corrected_category, comment, created_at)
                           VALUES (%s, %s, %s, %s, %s, now())""",
                (scan_id, user, thumbs, corrected, None if thumbs else "분류가 틀렸어요"),
            )
            self._count("feedback.insert")

    def changes(self) -> None:
        """Streaming-only behaviour: re-scoring (TOAST placeholder), changed minds, withdrawn feedback,
        an account closure."""
        with psycopg.connect(self.scan_dsn) as conn:
            n = conn.execute("""UPDATE scan.classification_results SET confidence = round((confidence * 0.9)::numeric, 4)
                                WHERE length(rationale) > 2000 AND id % 3 = 0""").rowcount
            self._count("classification.rescore", n)
            n = conn.execute("""UPDATE scan.feedback SET thumbs_up = NOT thumbs_up, updated_at = now(),
                                corrected_category = CASE WHEN thumbs_up THEN 'general' END WHERE id % 7 = 0""").rowcount
            self._count("feedback.update", n)
            n = conn.execute("DELETE FROM scan.feedback WHERE id % 11 = 0").rowcount
            self._count("feedback.delete", n)
        closed = self.user_ids[-1]
        with psycopg.connect(self.auth_dsn) as conn:
            conn.execute("DELETE FROM auth.users WHERE id = %s", (closed,))
            conn.execute("UPDATE auth.users SET updated_at = now(), provider = 'email' WHERE id % 10 = 1")
        self._count("users.delete")
