select
    id as llm_call_id,
    scan_id,
    stage,
    model,
    latency_ms,
    prompt_tokens,
    completion_tokens,
    status,
    created_at,
    _cdc_committed_at
from {{ source('scan', 'llm_call_log') }}
