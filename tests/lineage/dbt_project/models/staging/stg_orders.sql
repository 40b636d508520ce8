select o.id, o.amount, o.loaded_at, c.name as customer
from {{ source('raw', 'orders') }} o
left join {{ ref('int_customers') }} c on c.id = o.customer_id
