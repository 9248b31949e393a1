-- The worst items: predicted items by how often users corrected them.
select
    predicted_category,
    predicted_item,
    count(*) as feedback_count,
    sum(case when corrected_category is not null and corrected_category <> predicted_category
        then 1 else 0 end) as corrections,
    avg(case when corrected_category is not null and corrected_category <> predicted_category
        then 1.0 else 0.0 end) as correction_rate
from {{ ref('int_feedback__with_answer') }}
where predicted_item is not null
group by 1, 2
