{#- the LLM latency marts, per hour or per day: call counts and rates over every call; latency
    percentiles over successful calls only (errors and timeouts have no meaningful latency) -#}
{% macro llm_latency(period_column, period_expression) %}
with calls as (
    select *, {{ period_expression }} as {{ period_column }}
    from {{ ref('stg_scan__llm_call_log') }}
    {{ lookback_filter(utc_day('created_at'), period_column) }}
)

select
    {{ period_column }},
    stage,
    model,
    count(*) as calls,
    sum(case when status = 'ok' then 1 else 0 end) as ok_calls,
    avg(case when status = 'error' then 1.0 else 0.0 end) as error_rate,
    avg(case when status = 'timeout' then 1.0 else 0.0 end) as timeout_rate,
    {%- for p in [50, 90, 95, 99] %}
    {{ percentile("case when status = 'ok' then latency_ms end", p / 100) }} as p{{ p }}_latency_ms{{ "," if not loop.last }}
    {%- endfor %}
from calls
group by {{ period_column }}, stage, model
{% endmacro %}
