-- Open interest per bar (base-asset contracts and quote value).
with source as (
    select * from {{ source('raw', 'open_interest') }}
)

select
    venue,
    symbol,
    timeframe,
    ts,
    open_interest,
    open_interest_value
from source
