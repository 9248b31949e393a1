-- One row per scan with feedback: the scan's latest feedback (users may change their mind), the
-- answer the user saw (the latest classification created at or before that feedback), and the
-- golden label: the user's correction, else the model's label when the user confirmed it.
with feedback as (
    select
        *,
        row_number() over (
            partition by scan_id order by coalesce(updated_at, created_at) desc, feedback_id desc
        ) as newest_first
    from {{ ref('stg_scan__feedback') }}
),

latest_feedback as (
    select * from feedback where newest_first = 1
),

answer_candidates as (
    select
        latest_feedback.feedback_id,
        classifications.classification_id,
        row_number() over (
            partition by latest_feedback.feedback_id
            order by classifications.created_at desc, classifications.classification_id desc
        ) as newest_first
    from latest_feedback
    inner join {{ ref('stg_scan__classification_results') }} as classifications
        on classifications.scan_id = latest_feedback.scan_id
        and classifications.created_at <= latest_feedback.created_at
)

select
    latest_feedback.scan_id,
    latest_feedback.user_id,
    latest_feedback.feedback_id,
    latest_feedback.created_at as feedback_at,
    latest_feedback.thumbs_up,
    latest_feedback.corrected_category,
    latest_feedback.corrected_item,
    latest_feedback.comment,
    answer.classification_id,
    answer.category as predicted_category,
    answer.item as predicted_item,
    answer.confidence as predicted_confidence,
    answer.model as predicted_by_model,
    answer.prompt_version,
    answer.created_at as predicted_at,
    case
        when latest_feedback.corrected_category is not null then latest_feedback.corrected_category
        when latest_feedback.thumbs_up then answer.category
    end as golden_category,
    case
        when latest_feedback.corrected_category is not null then latest_feedback.corrected_item
        when latest_feedback.thumbs_up then answer.item
    end as golden_item,
    case
        when latest_feedback.corrected_category is not null then 'correction'
        when latest_feedback.thumbs_up then 'confirmed'
    end as golden_source
from latest_feedback
left join answer_candidates
    on answer_candidates.feedback_id = latest_feedback.feedback_id
    and answer_candidates.newest_first = 1
left join {{ ref('stg_scan__classification_results') }} as answer
    on answer.classification_id = answer_candidates.classification_id
