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

{#- BigQuery: a daily mart partitioned by its day (an hourly one by the day of its hour), so a
    dashboard's date filter and the incremental merge's lookback read only the days they touch.
    None elsewhere: DuckDB has no table partitions. -#}
{% macro day_partition(column, data_type='date') -%}
    {%- if target.type == 'bigquery' -%}
        {{ return({'field': column, 'data_type': data_type, 'granularity': 'day'}) }}
    {%- else -%}
        {{ return(none) }}
    {%- endif -%}
{%- endmacro %}
