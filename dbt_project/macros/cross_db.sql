{#- The few places where DuckDB and BigQuery SQL differ, handled once (adapter.dispatch). -#}

{#- a percentile of a column as an aggregate. DuckDB: exact, linear interpolation (quantile_cont).
    BigQuery has no exact percentile aggregate: approx_quantiles with 1000 buckets (within 0.1 %). -#}
{% macro percentile(column, fraction) -%}
    {{ return(adapter.dispatch('percentile')(column, fraction)) }}
{%- endmacro %}
{% macro default__percentile(column, fraction) -%}
    quantile_cont({{ column }}, {{ fraction }})
{%- endmacro %}
{% macro bigquery__percentile(column, fraction) -%}
    approx_quantiles({{ column }}, 1000)[offset({{ (fraction * 1000) | round | int }})]
{%- endmacro %}

{#- values of a group as an ordered list (DuckDB LIST, BigQuery ARRAY) -#}
{% macro ordered_list(expression, order_by) -%}
    {{ return(adapter.dispatch('ordered_list')(expression, order_by)) }}
{%- endmacro %}
{% macro default__ordered_list(expression, order_by) -%}
    list({{ expression }} order by {{ order_by }})
{%- endmacro %}
{% macro bigquery__ordered_list(expression, order_by) -%}
    array_agg({{ expression }} ignore nulls order by {{ order_by }})
{%- endmacro %}

{#- the UTC day of a timestamp (DuckDB sessions run in UTC, see profiles.yml) -#}
{% macro utc_day(ts) -%}
    cast({{ ts }} as date)
{%- endmacro %}

{#- seconds between two timestamps, as a float -#}
{% macro seconds_between(start_ts, end_ts) -%}
    ({{ dbt.datediff(start_ts, end_ts, 'microsecond') }} / 1000000.0)
{%- endmacro %}

{#- a 64-bit float (dbt.type_float() is FLOAT, 32-bit, on DuckDB) -#}
{% macro type_double() -%}
    {{ return('float64' if target.type == 'bigquery' else 'double') }}
{%- endmacro %}
