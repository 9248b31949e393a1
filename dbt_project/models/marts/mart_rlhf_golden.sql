-- The RLHF golden dataset: one row per scan with a usable verdict, from users whose account still
-- exists (closing an account removes its rows from every dataset built afterwards). With the
-- feedback's history: the verdict as the user first gave it, when, and when it last changed.
with verdict_versions as (
    select
        feedback_id,
        verdict,
        valid_from,
        lag(verdict) over (partition by feedback_id order by valid_from, valid_from_lsn) as previous_verdict,
        row_number() over (partition by feedback_id order by valid_from, valid_from_lsn) as oldest_first
    from {{ ref('stg_scan__feedback_history') }}
),

-- an edit that keeps the verdict (a comment fixed) is no change of it
label_history as (
    select
        feedback_id,
        max(case when oldest_first = 1 then verdict end) as verdict_given,
        min(valid_from) as verdict_given_at,
        max(case when previous_verdict <> verdict then valid_from end) as verdict_changed_at
    from verdict_versions
    group by feedback_id
)

select
    feedback.scan_id,
    feedback.user_id,
    coalesce(scans.image_path_processed, scans.image_path_raw) as image_path,
    feedback.feedback_id,
    feedback.feedback_at,
    feedback.thumbs_up,
    feedback.classification_id,
    feedback.predicted_category,
    feedback.predicted_item,
    feedback.predicted_confidence,
    feedback.predicted_by_model,
    feedback.prompt_version,
    retrievals.chunk_ids,
    retrievals.chunk_texts,
    feedback.golden_category,
    feedback.golden_item,
    feedback.golden_source,
    label_history.verdict_given,
    label_history.verdict_given_at,
    label_history.verdict_changed_at
from {{ ref('int_feedback__with_answer') }} as feedback
inner join {{ ref('stg_auth__users') }} as users on users.user_id = feedback.user_id
inner join {{ ref('stg_scan__scans') }} as scans on scans.scan_id = feedback.scan_id
left join {{ ref('int_scan__retrievals') }} as retrievals on retrievals.scan_id = feedback.scan_id
left join label_history on label_history.feedback_id = feedback.feedback_id
where feedback.golden_category is not null
  and feedback.classification_id is not null
