-- Misclassification notes: per day of feedback, how often the model's category was corrected to
-- which category.
{{ config(partition_by=day_partition('day')) }}

select
    {{ utc_day('feedback_at') }} as day,
    predicted_category,
    corrected_category,
    count(*) as corrections
from {{ ref('int_feedback__with_answer') }}
where corrected_category is not null
  and predicted_category is not null
  and corrected_category <> predicted_category
group by 1, 2, 3
