{#- incremental marts by day: rebuild the last `lookback_days` days each run (late rows land there) -#}
{% macro lookback_filter(day_expression, day_column='day') -%}
    {%- if is_incremental() -%}
    where {{ day_expression }} >= (
        select cast({{ dbt.dateadd('day', -var('lookback_days', 3), 'max(' ~ day_column ~ ')') }} as date)
        from {{ this }}
    )
    {%- endif -%}
{%- endmacro %}

{% macro incremental_strategy() -%}
    {{ return('merge' if target.type == 'bigquery' else 'delete+insert') }}
{%- endmacro %}
