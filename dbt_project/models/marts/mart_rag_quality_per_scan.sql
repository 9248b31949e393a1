-- Retrieval quality per scan, with the user's verdict when there is one.
select
    retrievals.scan_id,
    {{ utc_day('scans.created_at') }} as day,
    retrievals.chunk_count,
    retrievals.top1_relevance,
    retrievals.mean_relevance,
    least(floor(retrievals.top1_relevance * 10), 9) / 10.0 as relevance_bucket,
    feedback.thumbs_up
from {{ ref('int_scan__retrievals') }} as retrievals
inner join {{ ref('stg_scan__scans') }} as scans on scans.scan_id = retrievals.scan_id
left join {{ ref('int_feedback__with_answer') }} as feedback on feedback.scan_id = retrievals.scan_id
