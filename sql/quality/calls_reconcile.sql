-- mart_cost_per_scan accounts for every call that belongs to a scan: the sum of its calls equals
-- the count of scan.llm_call_log rows with a scan_id ({source}). A row here is the mismatch.
select calls, expected
from (
    select
        coalesce(sum(calls), 0) as calls,
        (select count(scan_id) from {source}) as expected
    from {batch}
)
where calls <> expected
