-- Label changes over time: per feedback, the verdict as the user first gave it, each change of it
-- (an update that changed only other columns is no change), and its withdrawal (the feedback
-- deleted: its last version ended without a successor). From the feedback's row history.
with versions as (
    select
        *,
        lag(verdict) over (partition by feedback_id order by valid_from, valid_from_lsn) as previous_verdict,
        row_number() over (
            partition by feedback_id order by valid_from desc, valid_from_lsn desc
        ) as newest_first
    from {{ ref('stg_scan__feedback_history') }}
)

select
    feedback_id,
    scan_id,
    user_id,
    valid_from as changed_at,
    case when previous_verdict is null then 'given' else 'changed' end as change_kind,
    previous_verdict as verdict_before,
    verdict as verdict_after
from versions
where previous_verdict is null or previous_verdict <> verdict

union all

select
    feedback_id,
    scan_id,
    user_id,
    valid_to as changed_at,
    'withdrawn' as change_kind,
    verdict as verdict_before,
    cast(null as {{ dbt.type_string() }}) as verdict_after
from versions
where newest_first = 1 and valid_to is not null
