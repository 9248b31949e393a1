-- Every LLM call with the price in force on its (UTC) day: the model's latest price row whose
-- effective_from is on or before that day. A price change applies from its date on only.
with calls as (
    select *, {{ utc_day('created_at') }} as call_day
    from {{ ref('stg_scan__llm_call_log') }}
),

prices as (
    select * from {{ ref('llm_prices') }}
),

in_force as (
    select calls.llm_call_id, max(prices.effective_from) as price_effective_from
    from calls
    inner join prices
        on prices.model = calls.model
        and prices.effective_from <= calls.call_day
    group by calls.llm_call_id
)

select
    calls.*,
    in_force.price_effective_from,
    prices.usd_per_1m_input,
    prices.usd_per_1m_output,
    cast(coalesce(calls.prompt_tokens, 0) as {{ type_double() }}) * prices.usd_per_1m_input / 1000000
        + cast(coalesce(calls.completion_tokens, 0) as {{ type_double() }}) * prices.usd_per_1m_output / 1000000
        as cost_usd
from calls
left join in_force on in_force.llm_call_id = calls.llm_call_id
left join prices
    on prices.model = calls.model
    and prices.effective_from = in_force.price_effective_from
