-- The RLHF golden dataset: one row per scan with a usable verdict, from users whose account still
-- exists (closing an account removes its rows from every dataset built afterwards).
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
    feedback.golden_source
from {{ ref('int_feedback__with_answer') }} as feedback
inner join {{ ref('stg_auth__users') }} as users on users.user_id = feedback.user_id
inner join {{ ref('stg_scan__scans') }} as scans on scans.scan_id = feedback.scan_id
left join {{ ref('int_scan__retrievals') }} as retrievals on retrievals.scan_id = feedback.scan_id
where feedback.golden_category is not null
  and feedback.classification_id is not null
