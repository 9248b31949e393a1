-- Thumbs-up rate by top-1 relevance bucket per day (does better retrieval make happier users?).
{{ config(partition_by=day_partition('day')) }}

select
    day,
    relevance_bucket,
    count(*) as scans,
    count(thumbs_up) as scans_with_feedback,
    sum(case when thumbs_up then 1 else 0 end) as thumbs_up,
    avg(case when thumbs_up then 1.0 when not thumbs_up then 0.0 end) as thumbs_up_rate
from {{ ref('mart_rag_quality_per_scan') }}
where relevance_bucket is not null
group by 1, 2
