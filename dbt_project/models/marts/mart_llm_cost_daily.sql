-- Token cost per day, model and stage, at the price in force on each call's day.
{{ config(materialized='incremental', unique_key=['day', 'model', 'stage'],
          incremental_strategy=incremental_strategy(), on_schema_change='append_new_columns',
          partition_by=day_partition('day', 'date')) }}

with calls as (
    select *, call_day as day
    from {{ ref('int_llm_calls__priced') }}
    {{ lookback_filter('call_day') }}
)

select
    day,
    model,
    stage,
    count(*) as calls,
    sum(coalesce(prompt_tokens, 0)) as prompt_tokens,
    sum(coalesce(completion_tokens, 0)) as completion_tokens,
    sum(cost_usd) as cost_usd,
    sum(case when cost_usd is null then 1 else 0 end) as unpriced_calls
from calls
group by day, model, stage
