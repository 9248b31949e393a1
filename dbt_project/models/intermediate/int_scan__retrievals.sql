-- Per scan: how many chunks the RAG step used, the best (rank 1) and mean relevance, and the chunks.
select
    scan_id,
    count(*) as chunk_count,
    max(case when rank = 1 then relevance_score end) as top1_relevance,
    avg(relevance_score) as mean_relevance,
    {{ ordered_list('chunk_id', 'rank') }} as chunk_ids,
    {{ ordered_list('chunk_text', 'rank') }} as chunk_texts
from {{ ref('stg_scan__rag_retrievals') }}
group by scan_id
