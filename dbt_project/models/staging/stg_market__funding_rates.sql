with source as (
    select * from {{ source('raw', 'funding_rates') }}
)

select
    venue,
    symbol,
    ts as settled_at,
    funding_rate,
    interval_hours
from source
