{{ config(group='finance', meta={'future_field': {'nested': [1, 2]}}) }}
select customer, sum(amount) as revenue, max(loaded_at) as loaded_at
from {{ ref('stg_orders') }}
group by customer
