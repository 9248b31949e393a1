-- LLM cost of each scan (all its calls, every stage).
select
    scan_id,
    min(call_day) as day,
    count(*) as calls,
    sum(coalesce(prompt_tokens, 0)) as prompt_tokens,
    sum(coalesce(completion_tokens, 0)) as completion_tokens,
    sum(cost_usd) as cost_usd
from {{ ref('int_llm_calls__priced') }}
where scan_id is not null
group by scan_id
