select
    id as classification_id,
    scan_id,
    category,
    item,
    cast(confidence as {{ type_double() }}) as confidence,
    rationale,
    model,
    prompt_version,
    created_at,
    _cdc_committed_at
from {{ source('scan', 'classification_results') }}
