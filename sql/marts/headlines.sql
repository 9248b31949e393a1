-- The marts' headline numbers `make demo` prints (DuckDB warehouse; dbt schemas main_marts).
SELECT 'p95 LLM latency, last day (ms)' AS headline,
       string_agg(stage || ' ' || round(p95, 0)::VARCHAR, ', ' ORDER BY stage) AS value
FROM (SELECT stage, max(p95_latency_ms) AS p95 FROM main_marts.mart_llm_latency_daily
      WHERE day = (SELECT max(day) FROM main_marts.mart_llm_latency_daily) GROUP BY stage)
UNION ALL
SELECT 'LLM error + timeout rate', round(100 * sum((error_rate + timeout_rate) * calls) / sum(calls), 2)::VARCHAR || ' %'
FROM main_marts.mart_llm_latency_daily
UNION ALL
SELECT 'token cost, whole period (USD)', round(sum(cost_usd), 2)::VARCHAR || ' over ' || count(DISTINCT day)::VARCHAR || ' days'
FROM main_marts.mart_llm_cost_daily
UNION ALL
SELECT 'cost per scan (USD, mean)', round(avg(cost_usd), 5)::VARCHAR FROM main_marts.mart_cost_per_scan
UNION ALL
SELECT 'RLHF golden rows', count(*)::VARCHAR || ' (' || sum(CASE WHEN golden_source = 'correction' THEN 1 ELSE 0 END)::VARCHAR
       || ' corrections, ' || sum(CASE WHEN golden_source = 'confirmed' THEN 1 ELSE 0 END)::VARCHAR || ' confirmed)'
FROM main_marts.mart_rlhf_golden
UNION ALL
SELECT 'most frequent misclassification', predicted_category || ' -> ' || corrected_category || ' ('
       || sum(corrections)::VARCHAR || ')'
FROM main_marts.mart_misclassification_daily GROUP BY predicted_category, corrected_category
QUALIFY row_number() OVER (ORDER BY sum(corrections) DESC) = 1
UNION ALL
SELECT 'thumbs-up rate by top-1 relevance bucket',
       string_agg(relevance_bucket::VARCHAR || ': ' || round(100 * up / answered, 0)::VARCHAR || ' %', ', '
                  ORDER BY relevance_bucket)
FROM (SELECT relevance_bucket, sum(thumbs_up) AS up, sum(scans_with_feedback) AS answered
      FROM main_marts.mart_rag_quality_daily GROUP BY relevance_bucket HAVING sum(scans_with_feedback) > 0);
