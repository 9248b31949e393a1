-- Eco2 auth service database (eco2-domain.md). Debezium captures it as <prefix>.auth.*.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE IF NOT EXISTS auth.users (
    id            bigserial PRIMARY KEY,
    username      text        NOT NULL,
    email         text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,      -- secret: never leaves the raw lake
    provider      text,                      -- kakao | google | apple | email
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz
);
