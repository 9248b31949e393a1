-- LLM latency per day, stage and model (see macros/llm_latency.sql).
{{ config(materialized='incremental', unique_key=['day', 'stage', 'model'],
          incremental_strategy=incremental_strategy(), on_schema_change='append_new_columns',
          partition_by=day_partition('day', 'date')) }}

{{ llm_latency('day', utc_day('created_at')) }}
