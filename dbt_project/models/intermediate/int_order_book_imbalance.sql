-- Perp order-book imbalance per snapshot over the top `order_book_levels` levels per side:
-- (bid amount - ask amount) / (bid amount + ask amount), in [-1, 1].
with levels as (
    select * from {{ ref('stg_market__order_book_snapshots') }}
    where market = 'perp' and level <= {{ var('order_book_levels') }}
)

select
    venue,
    symbol,
    snapshot_at,
    (
        coalesce(sum(amount) filter (where side = 'bid'), 0)
        - coalesce(sum(amount) filter (where side = 'ask'), 0)
    ) / nullif(sum(amount), 0) as order_book_imbalance
from levels
group by venue, symbol, snapshot_at
