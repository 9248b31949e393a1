-- Label changes per UTC day: verdicts given, changed and withdrawn (mart_label_changes).
{{ config(partition_by=day_partition('day')) }}

select
    {{ utc_day('changed_at') }} as day,
    change_kind,
    count(*) as changes
from {{ ref('mart_label_changes') }}
group by 1, 2
