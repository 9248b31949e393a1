-- LLM latency per hour, stage and model (see macros/llm_latency.sql).
{{ config(materialized='incremental', unique_key=['hour', 'stage', 'model'],
          incremental_strategy=incremental_strategy(), on_schema_change='append_new_columns',
          partition_by=day_partition('hour', 'timestamp')) }}

{{ llm_latency('hour', dbt.date_trunc('hour', 'created_at')) }}
