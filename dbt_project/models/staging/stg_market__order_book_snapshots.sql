-- Order-book levels per snapshot; level 1 is the best bid or ask.
with source as (
    select * from {{ source('raw', 'order_book_snapshots') }}
)

select
    venue,
    market,
    symbol,
    ts as snapshot_at,
    side,
    level,
    price,
    amount
from source
