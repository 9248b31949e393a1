select
    id as feedback_id,
    scan_id,
    user_id,
    thumbs_up,
    corrected_category,
    corrected_item,
    comment,
    created_at,
    updated_at,
    _cdc_committed_at
from {{ source('scan', 'feedback') }}
