select
    id as scan_id,
    user_id,
    status,
    image_path_raw,
    image_path_processed,
    created_at,
    completed_at,
    _cdc_committed_at
from {{ source('scan', 'scans') }}
