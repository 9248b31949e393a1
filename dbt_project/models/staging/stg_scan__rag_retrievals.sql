select
    id as retrieval_id,
    scan_id,
    rank,
    document_id,
    chunk_id,
    chunk_text,
    relevance_score,
    created_at,
    _cdc_committed_at
from {{ source('scan', 'rag_retrievals') }}
