-- Every version of every feedback row, with the verdict it carried: a corrected category, else
-- thumbs up (the answer confirmed) or thumbs down (rejected without a correction).
select
    id as feedback_id,
    scan_id,
    user_id,
    thumbs_up,
    corrected_category,
    corrected_item,
    case
        when corrected_category is not null then corrected_category
        when thumbs_up then 'confirmed'
        else 'rejected'
    end as verdict,
    valid_from,
    valid_to,
    valid_from_lsn,
    is_current
from {{ source('scan', 'feedback_history') }}
