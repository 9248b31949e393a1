-- Eco2 scan service database (eco2-domain.md). Debezium captures it as <prefix>.scan.*.
CREATE SCHEMA IF NOT EXISTS scan;

CREATE TABLE IF NOT EXISTS scan.scans (
    id                   uuid PRIMARY KEY,
    user_id              bigint      NOT NULL,   -- auth.users.id (other database: no FK)
    image_path_raw       text        NOT NULL,
    image_path_processed text,
    status               text        NOT NULL,   -- pending -> completed | failed
    created_at           timestamptz NOT NULL,
    completed_at         timestamptz
);

CREATE TABLE IF NOT EXISTS scan.classification_results (
    id             bigserial PRIMARY KEY,
    scan_id        uuid        NOT NULL,
    category       text        NOT NULL,
    item           text,
    confidence     numeric(5,4),
    rationale      text,                         -- often > 2 KB: TOASTed
    model          text        NOT NULL,
    prompt_version text,
    created_at     timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS scan.rag_retrievals (
    id              bigserial PRIMARY KEY,
    scan_id         uuid        NOT NULL,
    rank            int         NOT NULL,
    document_id     text,
    chunk_id        text,
    chunk_text      text,
    relevance_score double precision,
    created_at      timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS scan.llm_call_log (
    id                bigserial PRIMARY KEY,
    scan_id           uuid,
    stage             text        NOT NULL,      -- vision | embedding | answer
    model             text        NOT NULL,
    latency_ms        integer     NOT NULL,
    prompt_tokens     integer,
    completion_tokens integer,
    status            text        NOT NULL,      -- ok | error | timeout
    created_at        timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS scan.feedback (
    id                 bigserial PRIMARY KEY,
    scan_id            uuid        NOT NULL,
    user_id            bigint      NOT NULL,
    thumbs_up          boolean     NOT NULL,
    corrected_category text,
    corrected_item     text,
    comment            text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz
);
