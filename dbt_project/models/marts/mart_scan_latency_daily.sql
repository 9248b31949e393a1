-- End-to-end scan latency per day of creation: completed scans' completed_at - created_at.
{{ config(partition_by=day_partition('day')) }}

with scans as (
    select
        *,
        {{ utc_day('created_at') }} as day,
        case when status = 'completed' and completed_at is not null
            then {{ seconds_between('created_at', 'completed_at') }} end as latency_s
    from {{ ref('stg_scan__scans') }}
)

select
    day,
    count(*) as scans,
    sum(case when status = 'completed' then 1 else 0 end) as completed_scans,
    sum(case when status = 'failed' then 1 else 0 end) as failed_scans,
    sum(case when status = 'pending' then 1 else 0 end) as pending_scans,
    {{ percentile('latency_s', 0.5) }} as p50_latency_s,
    {{ percentile('latency_s', 0.9) }} as p90_latency_s,
    {{ percentile('latency_s', 0.95) }} as p95_latency_s,
    {{ percentile('latency_s', 0.99) }} as p99_latency_s
from scans
group by day
