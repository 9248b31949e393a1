-- Confusion matrix over all feedback with a golden label: predicted vs actual (golden) category.
select
    predicted_category,
    golden_category as actual_category,
    count(*) as scans
from {{ ref('int_feedback__with_answer') }}
where golden_category is not null
  and predicted_category is not null
group by 1, 2
