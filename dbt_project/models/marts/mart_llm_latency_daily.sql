-- LLM latency per day, stage and model: call counts and rates over every call; latency
-- percentiles over successful calls only (errors and timeouts have no meaningful latency).
{{ config(materialized='incremental', unique_key=['day', 'stage', 'model'],
          incremental_strategy=incremental_strategy(), on_schema_change='append_new_columns') }}

with calls as (
    select *, {{ utc_day('created_at') }} as day
    from {{ ref('stg_scan__llm_call_log') }}
    {{ lookback_filter(utc_day('created_at'), 'day') }}
)

select
    day,
    stage,
    model,
    count(*) as calls,
    sum(case when status = 'ok' then 1 else 0 end) as ok_calls,
    avg(case when status = 'error' then 1.0 else 0.0 end) as error_rate,
    avg(case when status = 'timeout' then 1.0 else 0.0 end) as timeout_rate,
    {{ percentile("case when status = 'ok' then latency_ms end", 0.5) }} as p50_latency_ms,
    {{ percentile("case when status = 'ok' then latency_ms end", 0.9) }} as p90_latency_ms,
    {{ percentile("case when status = 'ok' then latency_ms end", 0.95) }} as p95_latency_ms,
    {{ percentile("case when status = 'ok' then latency_ms end", 0.99) }} as p99_latency_ms
from calls
group by day, stage, model
